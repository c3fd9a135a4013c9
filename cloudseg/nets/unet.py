"""Vanilla U-Net (Ronneberger et al. 2015) with padded convolutions and BatchNorm.

Decoder as in the paper: a 2×2 transposed convolution ("up-convolution") halves the channels,
the skip is concatenated, then two 3×3 convolutions. At base width 64 with 4 input bands and
one output map this has ≈31.0 M parameters: the paper prints no count, but its layer table
(64 … 1024 channels) gives 31.0 M, the figure quoted for it in comparisons.
"""

from __future__ import annotations

import torch
from torch import nn

from cloudseg.nets.blocks import DoubleConv, double_conv_stages, encode, stage_widths


class VanillaUNet(nn.Module):
    """Vanilla U-Net: (B, `in_channels`, H, W) → (B, `classes`, H, W) logits."""

    def __init__(self, in_channels: int = 4, classes: int = 1, base_width: int = 64) -> None:
        super().__init__()
        w = stage_widths(base_width)
        self.pool = nn.MaxPool2d(2)
        self.down = double_conv_stages(in_channels, w)
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(4)])
        self.fuse = nn.ModuleList([DoubleConv(2 * w[i], w[i]) for i in range(4)])
        self.head = nn.Conv2d(w[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch whose H and W are multiples of 16."""
        skips = encode(self.down, self.pool, x)
        x = skips.pop()
        for i in reversed(range(4)):
            x = self.fuse[i](torch.cat([skips.pop(), self.up[i](x)], dim=1))
        return self.head(x)

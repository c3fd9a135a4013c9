"""Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the
Pancreas"), 2-D, with an additive attention gate on every skip connection.

Decoder step as in the widely used 2-D reference implementation (LeeJunHyun/Image_Segmentation,
`AttU_Net`): upsample + 3×3 conv, gate the skip with the upsampled features, concatenate, two
3×3 convs. At base width 64 this has ≈34.9 M parameters: the count of that reference
implementation (34,878,573 with 3 input channels and conv biases), the figure comparisons of
2-D Attention U-Nets quote. The paper itself reports counts only for its narrower 3-D models.
"""

from __future__ import annotations

import torch
from torch import nn

from cloudseg.nets.blocks import (
    AttentionGate,
    DoubleConv,
    UpConv,
    double_conv_stages,
    encode,
    stage_widths,
)


class AttentionUNet(nn.Module):
    """Attention U-Net: (B, `in_channels`, H, W) → (B, `classes`, H, W) logits."""

    def __init__(self, in_channels: int = 4, classes: int = 1, base_width: int = 64) -> None:
        super().__init__()
        w = stage_widths(base_width)
        self.pool = nn.MaxPool2d(2)
        self.down = double_conv_stages(in_channels, w)
        self.up = nn.ModuleList([UpConv(w[i + 1], w[i]) for i in range(4)])
        self.gate = nn.ModuleList([AttentionGate(w[i], w[i], max(w[i] // 2, 1)) for i in range(4)])
        self.fuse = nn.ModuleList([DoubleConv(2 * w[i], w[i]) for i in range(4)])
        self.head = nn.Conv2d(w[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch whose H and W are multiples of 16."""
        skips = encode(self.down, self.pool, x)
        x = skips.pop()
        for i in reversed(range(4)):
            up = self.up[i](x)
            x = self.fuse[i](torch.cat([self.gate[i](up, skips.pop()), up], dim=1))
        return self.head(x)

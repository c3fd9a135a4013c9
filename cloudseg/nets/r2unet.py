"""R2U-Net (Alom et al. 2018, "Recurrent Residual Convolutional Neural Network based on U-Net"):
every U-Net stage is a recurrent residual unit (two recurrent conv layers, t = 2, plus a
residual 1×1 projection).

Decoder step as in the widely used reference implementation (LeeJunHyun/Image_Segmentation,
`R2U_Net`): upsample + 3×3 conv, concatenate the skip, one recurrent residual unit. At base
width 64 this has ≈39.1 M parameters: 39,091,521 for that reference implementation
(3 input channels, t = 2, conv biases), as counted in issue #1 of
github.com/lixiaolei1982/Keras-Implementation-of-U-Net-R2U-Net-Attention-U-Net-Attention-R2U-Net.-
The paper itself reports counts only for narrower networks.
"""

from __future__ import annotations

import torch
from torch import nn

from cloudseg.nets.blocks import RRCNNBlock, UpConv, encode, stage_widths


class R2UNet(nn.Module):
    """R2U-Net: (B, `in_channels`, H, W) → (B, `classes`, H, W) logits; `t` recurrent steps."""

    def __init__(
        self, in_channels: int = 4, classes: int = 1, base_width: int = 64, t: int = 2
    ) -> None:
        super().__init__()
        w = stage_widths(base_width)
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(
            [RRCNNBlock(in_channels, w[0], t)] + [RRCNNBlock(w[i], w[i + 1], t) for i in range(4)]
        )
        self.up = nn.ModuleList([UpConv(w[i + 1], w[i]) for i in range(4)])
        self.fuse = nn.ModuleList([RRCNNBlock(2 * w[i], w[i], t) for i in range(4)])
        self.head = nn.Conv2d(w[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch whose H and W are multiples of 16."""
        skips = encode(self.down, self.pool, x)
        x = skips.pop()
        for i in reversed(range(4)):
            x = self.fuse[i](torch.cat([skips.pop(), self.up[i](x)], dim=1))
        return self.head(x)

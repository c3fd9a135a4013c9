"""Building blocks shared by the from-scratch U-Nets.

Memory-lean choices: no conv bias before BatchNorm (BN's shift makes it redundant), in-place
ReLU, and encoder/decoder stages that keep only the skip tensors the decoder needs.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias: BatchNorm follows), BatchNorm, ReLU; padded so H and W are kept."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DoubleConv(nn.Sequential):
    """Two 3×3 conv-BN-ReLU: the U-Net stage (Ronneberger 2015, with BN and padding)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))


class UpConv(nn.Sequential):
    """Bilinear 2× upsampling then a 3×3 conv-BN-ReLU that sets the channel count (the decoder
    step of the attention U-Net and R2U-Net reference implementations).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(c_in, c_out),
        )


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eq. 1-2): the decoder's gating signal `g`
    scores each skip pixel; the skip features `x` are scaled by that score in [0, 1].
    """

    def __init__(self, c_gate: int, c_skip: int, c_inter: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(c_gate, c_inter, 1, bias=False), nn.BatchNorm2d(c_inter))
        self.w_x = nn.Sequential(nn.Conv2d(c_skip, c_inter, 1, bias=False), nn.BatchNorm2d(c_inter))
        self.psi = nn.Sequential(nn.Conv2d(c_inter, 1, 1, bias=False), nn.BatchNorm2d(1))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The skip features `x` scaled by the gate computed from `g` and `x`."""
        a = self.relu(self.w_g(g) + self.w_x(x))
        return x * torch.sigmoid(self.psi(a))


class RecurrentConv(nn.Module):
    """Recurrent convolutional layer (Alom et al. 2018, eq. 1): one shared 3×3 conv applied
    t+1 times, each step seeing the block input plus the previous state.
    """

    def __init__(self, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.conv = conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """t+1 applications of the shared conv, each on the input plus the last state."""
        h = self.conv(x)
        for _ in range(self.t):
            h = self.conv(x + h)
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual unit: a 1×1 projection, two recurrent conv layers, a residual add."""

    def __init__(self, c_in: int, c_out: int, t: int = 2) -> None:
        super().__init__()
        self.project = nn.Conv2d(c_in, c_out, 1)
        self.body = nn.Sequential(RecurrentConv(c_out, t), RecurrentConv(c_out, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The projected input plus the two recurrent layers' output."""
        x = self.project(x)
        return x + self.body(x)


def stage_widths(base_width: int) -> list[int]:
    """Channels of the five stages: base, 2×, 4×, 8×, 16× (64 … 1024 in the papers)."""
    return [base_width * 2**i for i in range(5)]


def encode(stages: nn.ModuleList, pool: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The U-Net contracting path shared by the from-scratch models: stage outputs, shallowest
    first (the last one is the bottleneck, the others are the skips).
    """
    features = []
    for i, stage in enumerate(stages):
        x = stage(x if i == 0 else pool(x))
        features.append(x)
    return features


def double_conv_stages(in_channels: int, widths: list[int]) -> nn.ModuleList:
    """The plain U-Net contracting stages (vanilla and attention U-Net): one DoubleConv each."""
    return nn.ModuleList(
        [DoubleConv(in_channels, widths[0])]
        + [DoubleConv(widths[i], widths[i + 1]) for i in range(len(widths) - 1)]
    )

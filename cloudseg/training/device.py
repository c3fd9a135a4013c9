"""Where and how a run computes: CUDA with AMP (bf16 where supported, else fp16 + GradScaler) and
channels_last, or the CPU in plain fp32. One decision, made once per fit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import cast

import torch

from cloudseg.config import TrainConfig
from cloudseg.errors import ConfigError


@dataclass(frozen=True)
class DeviceSetup:
    """The device, autocast dtype and memory layout one fit runs with."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool

    @property
    def is_cuda(self) -> bool:
        """Whether the run is on a CUDA device."""
        return self.device.type == "cuda"

    @property
    def needs_scaler(self) -> bool:
        """Whether AMP needs a GradScaler (fp16 only)."""
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range.
        return self.amp_dtype == torch.float16

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout for model and batches: channels_last or contiguous."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast to the AMP dtype, or a no-op in plain fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def synchronize(self) -> None:
        """Wait for queued kernels, so wall-clock timings measure the work, not the queueing."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        """One line for logs and tables, e.g. "cuda:0 (bfloat16, channels_last)"."""
        amp = "fp32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device} ({amp}{layout})"


def select_device(train_cfg: TrainConfig) -> DeviceSetup:
    """`train.device`: "auto" picks CUDA when present; asking for "cuda" without one is an error."""
    want = train_cfg.device
    has_cuda = torch.cuda.is_available()
    if want == "cuda" and not has_cuda:
        raise ConfigError("train.device: 'cuda' requested but no CUDA device is available")
    if want == "cpu" or not has_cuda:
        return DeviceSetup(torch.device("cpu"), amp_dtype=None, channels_last=False)
    device = torch.device("cuda", torch.cuda.current_device())
    amp_dtype = None
    if train_cfg.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DeviceSetup(device, amp_dtype=amp_dtype, channels_last=train_cfg.channels_last)


def compiled(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """torch.compile'd `model` (1.33x on UNet-ResNet34 training on an H100). Shapes are fixed
    within a run, so one graph is compiled per input size (training crop, validation).
    """
    # compiling a Module returns a Module (OptimizedModule); the stubs promise a callable
    return cast(torch.nn.Module, torch.compile(model, backend=backend, dynamic=False))

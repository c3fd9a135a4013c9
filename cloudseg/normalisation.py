"""uint16 Landsat DN → float network input, done on the device.

Batches travel host → device as uint16 (half the bytes of float32) and are converted there; the
conversion is recorded in the run config (`train.normalisation`, `train.band_mean/std`) so a
checkpoint always knows how its inputs were scaled.
"""

from __future__ import annotations

import torch

from cloudseg.config import TrainConfig
from cloudseg.errors import ConfigError

DN_MAX = 65535.0


def nodata_mask(images: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) images → (B, 1, H, W) bool, True where all four bands are 0 (scene margin)."""
    if images.dtype == torch.uint16:  # few ops exist for uint16; int32 has them all
        images = images.to(torch.int32)
    return (images == 0).all(dim=1, keepdim=True)


def normalise(images: torch.Tensor, train_cfg: TrainConfig) -> torch.Tensor:
    """uint16 (B, 4, H, W) → float32: `/65535` ("max") or per-band z-score ("band-stats")."""
    x = images.to(torch.float32)
    if train_cfg.normalisation == "max":
        return x / DN_MAX
    if train_cfg.band_mean is None or train_cfg.band_std is None:
        raise ConfigError(
            "train.normalisation: 'band-stats' needs train.band_mean and train.band_std "
            "(run_training fills them from the training subset)"
        )
    if any(s <= 0 for s in train_cfg.band_std):
        raise ConfigError(f"train.band_std: every value must be > 0 (got {train_cfg.band_std})")
    mean = torch.tensor(train_cfg.band_mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(train_cfg.band_std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std

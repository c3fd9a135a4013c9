"""What a training run returns: the resolved config, the per-epoch history and the best epoch.

Plain frozen dataclasses, shared by `cloudseg.fit`, the CLI tables and the sweep objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudseg.config import RunConfig
from cloudseg.metrics import Metrics
from cloudseg.training.thresholds import ThresholdFigures, flat_figures


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's losses, validation counts and timings."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val: Metrics  # counts summed over the whole validation set
    seconds: float  # wall time of the epoch, training + validation
    images_per_s: float  # training throughput
    scene_iou: float | None = None  # IoU per validation scene, averaged (train.val_metric scene)
    # The same pass at the "fixed", "official" (12/255) and "tuned" thresholds, from its
    # probability histograms (cloudseg.training.thresholds).
    thresholds: dict[str, ThresholdFigures] | None = None

    def metrics(self) -> dict[str, float | int]:
        """The validation figures: pooled counts and metrics, plus "scene_iou" and the
        figures at the official and tuned thresholds (`iou_official`, ...) when measured.
        """
        extra: dict = {} if self.scene_iou is None else {"scene_iou": self.scene_iou}
        if self.thresholds is not None:
            extra.update(flat_figures(self.thresholds))
        return {**self.val.as_dict(), **extra}

    def score(self, val_metric: str = "patch", rule: str = "fixed") -> float:
        """What picks the best epoch: pooled IoU or per-scene mean IoU (train.val_metric), at
        the threshold rule train.select_at ("fixed": train.threshold; "official"; "tuned").
        """
        if rule != "fixed" and self.thresholds is not None:
            figures = self.thresholds[rule]
            return figures.scene_iou if val_metric == "scene" else figures.pooled.iou
        if val_metric == "scene" and self.scene_iou is not None:
            return self.scene_iou
        return self.val.iou

    def as_dict(self) -> dict[str, float | int]:
        """The record as flat JSON (losses, timings and `metrics()`)."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "seconds": self.seconds,
            "images_per_s": self.images_per_s,
            **self.metrics(),
        }


@dataclass(frozen=True)
class FitResult:
    """One fit: the resolved config, every epoch, the best one and where its weights are."""

    config: RunConfig  # resolved: pos_weight "auto" and band statistics filled in
    history: tuple[EpochRecord, ...]
    best_epoch: int  # epoch with the best validation IoU (scene IoU if train.val_metric scene)
    stopped_early: bool  # a callback asked to stop
    fit_seconds: float
    peak_memory_mb: float | None  # CUDA peak allocated; None on CPU
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    # e.g. the data summary (patch counts, pos_weight)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Metrics:
        """The best epoch's validation metrics."""
        return self.best_record.val

    @property
    def best_record(self) -> EpochRecord:
        """The best epoch's record (`best_epoch` is 1-based)."""
        return self.history[self.best_epoch - 1]

    @property
    def images_per_s(self) -> float:
        """Training throughput averaged over epochs."""
        return sum(r.images_per_s for r in self.history) / max(len(self.history), 1)

"""What a training run returns: the resolved config, the per-epoch history and the best epoch.

Plain frozen dataclasses, shared by `cloudseg.fit`, the CLI tables and the sweep objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cloudseg.config import RunConfig
from cloudseg.metrics import Metrics


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val: Metrics  # counts summed over the whole validation set
    seconds: float  # wall time of the epoch, training + validation
    images_per_s: float  # training throughput
    scene_iou: float | None = None  # IoU per validation scene, averaged (train.val_metric scene)
    # From the probability histograms (cloudseg.scenes.histograms), per-scene mean when the
    # scenes are known, else pooled: IoU at the official 12/255, and the best threshold's.
    iou_official: float | None = None
    tuned_threshold: float | None = None
    iou_tuned: float | None = None

    def metrics(self) -> dict:
        """The validation figures: pooled counts and metrics, plus "scene_iou" and the
        threshold figures when measured."""
        extra = {k: v for k, v in (("scene_iou", self.scene_iou),
                                   ("iou_official", self.iou_official),
                                   ("tuned_threshold", self.tuned_threshold),
                                   ("iou_tuned", self.iou_tuned)) if v is not None}
        return {**self.val.as_dict(), **extra}

    def score(self, val_metric: str = "patch") -> float:
        """What picks the best epoch (train.val_metric): pooled IoU or per-scene mean IoU."""
        if val_metric == "scene" and self.scene_iou is not None:
            return self.scene_iou
        return self.val.iou

    def as_dict(self) -> dict:
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
    config: RunConfig  # resolved: pos_weight "auto" and band statistics filled in
    history: tuple[EpochRecord, ...]
    best_epoch: int  # epoch with the best validation IoU (scene IoU if train.val_metric scene)
    stopped_early: bool  # a callback asked to stop
    fit_seconds: float
    peak_memory_mb: float | None  # CUDA peak allocated; None on CPU
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    extras: dict = field(default_factory=dict)  # e.g. data summary (patch counts, pos_weight)

    @property
    def best(self) -> Metrics:
        return self.best_record.val

    @property
    def best_record(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]

    @property
    def images_per_s(self) -> float:
        return sum(r.images_per_s for r in self.history) / max(len(self.history), 1)

"""What `fit` calls after each epoch: the `Callback` protocol and the checkpoint callback.

A callback is any object with `on_epoch_end(epoch, record)`; returning True stops training after
this epoch, raising ends the run (a sweep's pruning callback does either, so the library never
learns which optimiser drives it). Checkpointing is one such callback, first in line, so a run
stopped or pruned by a later callback still has its best bundle on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cloudseg.config import RunConfig, TrainConfig
from cloudseg.training.checkpoint import save_bundle
from cloudseg.training.results import EpochRecord

if TYPE_CHECKING:
    from torch import nn


class Callback(Protocol):
    """Anything with this method; returning True stops training after this epoch."""

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> bool | None:
        """Called after each validated epoch; True stops training."""


def notify(callbacks: Sequence[Callback], epoch: int, record: EpochRecord) -> bool:
    """Every callback sees every epoch (a sweep reports, a logger logs); any may stop."""
    return any([bool(cb.on_epoch_end(epoch, record)) for cb in callbacks])


def better(record: EpochRecord, best: EpochRecord | None, train: TrainConfig) -> bool:
    """Whether `record` beats `best` on `train.val_metric` at `train.select_at`'s threshold."""
    rule = (train.val_metric, train.select_at)
    return best is None or record.score(*rule) > best.score(*rule)


def best_record(history: Sequence[EpochRecord], train: TrainConfig) -> EpochRecord:
    """The epoch that scores highest (`better`); the earliest of equals."""
    best = history[0]
    for record in history[1:]:
        if better(record, best, train):
            best = record
    return best


class Checkpoint:
    """Bundles under `directory`: `best` each time the validation score improves, `last` when
    the run ends without an error (finished or stopped by a callback).
    """

    def __init__(self, directory: str | Path, model: nn.Module, config: RunConfig) -> None:
        self.directory, self.model, self.config = Path(directory), model, config
        self.best: EpochRecord | None = None
        self.best_dir: Path | None = None
        self.last_dir: Path | None = None

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> bool:
        """Save `best` when this epoch improves on it; never stops the run."""
        if better(record, self.best, self.config.train):
            self.best = record
            self.best_dir = save_bundle(self.directory / "best", self.model, self.config,
                                        record.as_dict())
        return False  # saving never stops a run

    def save_last(self, record: EpochRecord) -> Path:
        """The final weights, with the last epoch's figures."""
        self.last_dir = save_bundle(self.directory / "last", self.model, self.config,
                                    record.as_dict())
        return self.last_dir

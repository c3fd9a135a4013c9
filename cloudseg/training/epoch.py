"""One epoch of `fit`: the training steps, then validation into an `EpochRecord`.

Batches arrive as uint16 and are normalised on the device. Losses stay on the device and are
read back every few steps, so the kernel queue stays full in between.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cloudseg.config import RunConfig, TrainConfig
from cloudseg.errors import ConfigError, DivergedError
from cloudseg.metrics import ConfusionMeter, Metrics
from cloudseg.normalisation import nodata_mask, normalise
from cloudseg.scenes.histograms import ThresholdHistograms
from cloudseg.scenes.metrics import SceneMeter
from cloudseg.training.device import DeviceSetup
from cloudseg.training.results import EpochRecord
from cloudseg.training.thresholds import threshold_figures

# Reading the loss back to the host waits for the GPU; doing it every few steps (for the
# divergence check and the progress bar) keeps the kernel queue full in between.
LOSS_READBACK_EVERY = 10


@dataclass(frozen=True)
class StepInfo:
    """What a progress hook sees every few steps."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float  # mean training loss of the steps since the last report
    images_per_s: float  # training throughput so far in this epoch


ProgressHook = Callable[[StepInfo], Any]


@dataclass
class Trainer:
    """The objects every step of one run shares, built once by `fit`."""

    model: nn.Module  # what checkpoints save
    net: nn.Module  # what runs the steps: `model`, or its torch.compile wrapper (same weights)
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    setup: DeviceSetup
    config: RunConfig
    steps: int  # training steps per epoch


@dataclass(frozen=True)
class TrainedEpoch:
    """The training half of an epoch, before validation."""

    epoch: int
    started: float  # time.perf_counter() at the start of the epoch
    loss: float  # mean training loss per step
    images: int
    seconds: float  # training only


def train_epoch(t: Trainer, loader: Iterable, epoch: int, report: ProgressHook) -> TrainedEpoch:
    """`t.steps` optimiser steps; a non-finite loss raises DivergedError with its step."""
    started = time.perf_counter()
    tcfg = t.config.train
    _set_epoch(loader, epoch)
    t.net.train()
    losses: list[torch.Tensor] = []  # per-step losses still on the device
    loss_sum, n_images, done_steps = 0.0, 0, 0
    for step, (images, masks) in enumerate(itertools.islice(loader, t.steps), 1):
        raw, x, y = to_device(images, masks, t.setup, tcfg)
        losses.append(_step(t, x, y).detach())
        n_images, done_steps = n_images + raw.shape[0], step
        if len(losses) == LOSS_READBACK_EVERY or step == t.steps:
            values = _finite_losses(losses, epoch, step)
            loss_sum += sum(values)
            losses = []
            rate = n_images / (time.perf_counter() - started)
            report(StepInfo(epoch, tcfg.epochs, step, t.steps, sum(values) / len(values), rate))
    if losses:  # the loader ended before its len() said it would
        loss_sum += sum(_finite_losses(losses, epoch, done_steps))
    t.setup.synchronize()
    return TrainedEpoch(epoch, started, loss_sum / max(done_steps, 1), n_images,
                        time.perf_counter() - started)


def _step(t: Trainer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Forward (autocast on CUDA), loss in fp32, backward, clip, optimiser and schedule step."""
    with t.setup.autocast():
        logits = t.net(x)
    loss = t.loss_fn(logits.float(), y)  # the loss in fp32, whatever the forward ran in
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    if t.config.optim.grad_clip is not None:
        t.scaler.unscale_(t.optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(t.model.parameters(), t.config.optim.grad_clip)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    return loss


def validate_epoch(
    t: Trainer, loader: Iterable, trained: TrainedEpoch, scenes: Sequence[str] | None,
    extents: np.ndarray | None = None,
) -> EpochRecord:
    """Validate after `trained` and record the epoch: pooled counts, the per-scene mean IoU
    with `train.val_metric` "scene", and the figures at the three thresholds.
    """
    tcfg = t.config.train
    by_scene = tcfg.val_metric == "scene"
    per_scene = SceneMeter(tcfg.threshold) if by_scene else None
    hist = ThresholdHistograms()
    val_loss, val_metrics = validate(t.net, t.loss_fn, loader, t.setup, tcfg, scenes=scenes,
                                     scene_meter=per_scene, histograms=hist, extents=extents)
    return EpochRecord(
        epoch=trained.epoch, train_loss=trained.loss, val_loss=val_loss, val=val_metrics,
        seconds=time.perf_counter() - trained.started,
        images_per_s=trained.images / trained.seconds,
        scene_iou=None if per_scene is None else per_scene.iou,
        thresholds=threshold_figures(hist, tcfg.threshold, by_scene),
    )


@torch.no_grad()
def validate(
    model: nn.Module, loss_fn: nn.Module, loader: Iterable, setup: DeviceSetup, tcfg: TrainConfig,
    *, scenes: Sequence[str] | None = None, scene_meter: SceneMeter | None = None,
    histograms: ThresholdHistograms | None = None, extents: np.ndarray | None = None,
) -> tuple[float, Metrics]:
    """Mean loss per image and confusion counts over the whole loader (no-data pixels out of
    the counts when `train.ignore_nodata` is true; only the scene's extent, `extents[i]` =
    (y0, y1, x0, x1) of the i-th item, when "padding"). With `scene_meter`, each item's
    counts also go to its scene, `scenes[i]` for the loader's i-th item; `histograms`
    collects the probability histograms (per scene when `scenes` is given) that give the
    counts at any threshold.
    """
    if scene_meter is not None and scenes is None:
        raise ConfigError("validate: a scene_meter needs the scene of each item (scenes=)")
    model.eval()
    meter = ConfusionMeter(tcfg.threshold)
    loss_sum = torch.zeros((), device=setup.device)
    n = 0
    for images, masks in loader:
        raw, x, y = to_device(images, masks, setup, tcfg)
        with setup.autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += loss_fn(logits, y) * raw.shape[0]
        valid = _valid(raw, tcfg, extents, n)
        meter.update_from_logits(logits, y, valid)
        if scene_meter is not None and scenes is not None:
            scene_meter.update_from_logits(scenes[n : n + raw.shape[0]], logits, y, valid)
        if histograms is not None:
            names = scenes[n : n + raw.shape[0]] if scenes is not None else ["val"] * len(raw)
            histograms.update(names, torch.sigmoid(logits), y, valid)
        n += raw.shape[0]
    if scenes is not None and n != len(scenes):
        raise ConfigError(f"validate: {len(scenes)} scene names for {n} validation items")
    return loss_sum.item() / max(n, 1), meter.metrics


def _valid(raw: torch.Tensor, tcfg: TrainConfig, extents: np.ndarray | None, start: int
           ) -> torch.Tensor | None:
    """The pixels a validation batch counts (None: all), per `train.ignore_nodata`."""
    if tcfg.ignore_nodata == "padding":
        from cloudseg.scenes.extent import extent_mask

        if extents is None:
            raise ConfigError("train.ignore_nodata: padding needs the validation items' scene "
                              "extents (fit(..., val_extents=))")
        if raw.shape[-1] != raw.shape[-2]:
            raise ConfigError("train.ignore_nodata: padding needs whole square patches")
        return extent_mask(extents[start : start + raw.shape[0]], raw.shape[-1], raw.device)
    return ~nodata_mask(raw) if tcfg.ignore_nodata else None


def to_device(
    images: torch.Tensor, masks: torch.Tensor, setup: DeviceSetup, tcfg: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint16 images travel as uint16 (half the bytes) and become floats on the device."""
    raw = images.to(setup.device, non_blocking=True)
    target = masks.to(setup.device, non_blocking=True)
    if target.ndim == 3:  # (B, H, W) masks: add the channel axis the logits have
        target = target.unsqueeze(1)
    x = normalise(raw, tcfg).contiguous(memory_format=setup.memory_format)
    return raw, x, target.float()


def _set_epoch(loader: Iterable, epoch: int) -> None:
    """Fresh random crops and flips each epoch, reproducibly (PatchDataset.set_epoch)."""
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def _finite_losses(losses: list[torch.Tensor], epoch: int, last_step: int) -> list[float]:
    """Read pending losses back; the first non-finite one raises with its own step number."""
    values = torch.stack(losses).tolist()
    first_step = last_step - len(values) + 1
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise DivergedError(epoch=epoch, step=first_step + i, loss=value)
    return values

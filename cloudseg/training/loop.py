"""fit(): one training run, readable top to bottom (in the spirit of nanoGPT's train.py).

The loop receives objects (model, loss, loaders, callbacks), never names, so the CLI, the sweep
and a notebook call it the same way. Batches arrive as uint16 and are normalised on the device.
On CUDA it trains with AMP and channels_last; on the CPU in plain fp32, deterministically.
"""

from __future__ import annotations

import gc
import itertools
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cloudseg.config import RunConfig, TrainConfig
from cloudseg.errors import ConfigError, DivergedError, OutOfMemoryError
from cloudseg.metrics import ConfusionMeter, Metrics
from cloudseg.normalise import nodata_mask, normalise
from cloudseg.scenes.histograms import ThresholdHistograms
from cloudseg.scenes.metrics import SceneMeter
from cloudseg.training.checkpoint import save_bundle
from cloudseg.training.device import DeviceSetup, compiled, select_device
from cloudseg.training.results import EpochRecord, FitResult
from cloudseg.training.schedule import make_scheduler
from cloudseg.training.thresholds import threshold_figures

# Reading the loss back to the host waits for the GPU; doing it every few steps (for the
# divergence check and the progress bar) keeps the kernel queue full in between.
LOSS_READBACK_EVERY = 10


class Callback(Protocol):
    """Anything with this method; returning True stops training after this epoch."""

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> bool | None: ...


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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device): same seed on the CPU → same run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    config: RunConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    progress: ProgressHook | Any | None = None,
    val_scenes: Sequence[str] | None = None,
) -> FitResult:
    """Train `model` for `config.train.epochs`, validating after each epoch.

    Batches are `(images uint16 (B,4,H,W), masks uint8 (B,1,H,W) {0,1})`. `progress` is a
    callable taking StepInfo, a rich Progress, or None (silent). Checkpoint bundles go to
    `checkpoint_dir/best` (best validation IoU) and `checkpoint_dir/last`.
    `val_scenes[i]`, the scene of the val loader's i-th item, gives per-scene figures (the
    threshold figures' `scene_ious`; with `train.val_metric` "scene", the per-scene mean IoU
    that picks the best epoch).
    """
    t_fit = time.perf_counter()
    tcfg, ocfg = config.train, config.optim
    seed_everything(tcfg.seed)
    setup = select_device(tcfg)
    steps = len(train_loader)  # type: ignore[arg-type]
    if tcfg.max_steps_per_epoch is not None:
        steps = min(steps, tcfg.max_steps_per_epoch)
    if steps == 0 or len(val_loader) == 0:  # type: ignore[arg-type]
        raise ConfigError("fit: the training and validation loaders must yield at least one batch")
    if tcfg.val_metric == "scene" and val_scenes is None:
        raise ConfigError("train.val_metric: 'scene' needs fit(..., val_scenes=[scene per "
                          "validation item]); cloudseg.training.build.run_training passes them")

    model = model.to(setup.device, memory_format=setup.memory_format)
    # `net` runs the steps; `model` (the same parameters) is what checkpoints save, so a bundle
    # never holds torch.compile's wrapper names.
    net = compiled(model) if tcfg.compile and setup.is_cuda else model
    loss_fn = loss_fn.to(setup.device)  # a loss may hold buffers (e.g. pos_weight)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay,
        fused=True if setup.is_cuda else None,
    )
    scheduler = make_scheduler(optimizer, ocfg, steps, tcfg.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=setup.needs_scaler)  # fp16 only
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if setup.is_cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest
        torch.cuda.reset_peak_memory_stats(setup.device)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)  # free on the CPU
    report = _Reporter(progress, tcfg.epochs, steps)

    history: list[EpochRecord] = []
    rule = (tcfg.val_metric, tcfg.select_at)  # what makes an epoch the best
    best: EpochRecord | None = None
    best_dir = last_dir = None
    stopped_early = False
    oom_detail: str | None = None
    try:
        for epoch in range(1, tcfg.epochs + 1):
            t_epoch = time.perf_counter()
            _set_epoch(train_loader, epoch)
            net.train()
            losses: list[torch.Tensor] = []  # per-step losses still on the device
            loss_sum, n_images, done_steps = 0.0, 0, 0
            for step, (images, masks) in enumerate(itertools.islice(train_loader, steps), 1):
                raw, x, y = _to_device(images, masks, setup, tcfg)
                with setup.autocast():
                    logits = net(x)
                loss = loss_fn(logits.float(), y)  # the loss in fp32, whatever the forward ran in
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if ocfg.grad_clip is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    nn.utils.clip_grad_norm_(model.parameters(), ocfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(loss.detach())
                n_images, done_steps = n_images + raw.shape[0], step
                if len(losses) == LOSS_READBACK_EVERY or step == steps:
                    values = _finite_losses(losses, epoch, step)
                    loss_sum += sum(values)
                    losses = []
                    rate = n_images / (time.perf_counter() - t_epoch)
                    mean = sum(values) / len(values)
                    report(StepInfo(epoch, tcfg.epochs, step, steps, mean, rate))
            if losses:  # the loader ended before its len() said it would
                loss_sum += sum(_finite_losses(losses, epoch, done_steps))
            setup.synchronize()
            train_seconds = time.perf_counter() - t_epoch

            per_scene = SceneMeter(tcfg.threshold) if tcfg.val_metric == "scene" else None
            hist = ThresholdHistograms()
            val_loss, val_metrics = validate(
                net, loss_fn, val_loader, setup, tcfg, scenes=val_scenes, scene_meter=per_scene,
                histograms=hist,
            )
            record = EpochRecord(
                epoch=epoch, train_loss=loss_sum / max(done_steps, 1), val_loss=val_loss,
                val=val_metrics, seconds=time.perf_counter() - t_epoch,
                images_per_s=n_images / train_seconds,
                scene_iou=None if per_scene is None else per_scene.iou,
                thresholds=threshold_figures(hist, tcfg.threshold, tcfg.val_metric == "scene"),
            )
            history.append(record)
            if best is None or record.score(*rule) > best.score(*rule):
                best = record
                if checkpoint_dir is not None:
                    best_dir = Path(checkpoint_dir) / "best"
                    save_bundle(best_dir, model, config, record.as_dict())
            # Every callback sees every epoch (a sweep reports, a logger logs); any may stop.
            if any([bool(cb.on_epoch_end(epoch, record)) for cb in callbacks]):
                stopped_early = True
                break
    except torch.cuda.OutOfMemoryError as err:
        # Leave this block first: the exception's frames pin the batch tensors.
        oom_detail = str(err).splitlines()[0] if str(err) else "CUDA out of memory"
    finally:
        report.close()
        torch.use_deterministic_algorithms(was_deterministic)

    if oom_detail is not None:
        # Drop every GPU tensor this frame holds: the error we raise keeps the frame alive.
        images = masks = raw = x = y = logits = loss = losses = net = None  # noqa: F841
        del optimizer, scheduler, scaler
        model.to("cpu")  # the caller may keep model and loss; their GPU memory must go
        loss_fn.to("cpu")
        gc.collect()
        torch.cuda.empty_cache()
        raise OutOfMemoryError(ocfg.batch_size, oom_detail)

    assert best is not None  # at least one epoch ran (epochs >= 1 is validated)
    if checkpoint_dir is not None:
        last_dir = save_bundle(Path(checkpoint_dir) / "last", model, config, history[-1].as_dict())
    peak = torch.cuda.max_memory_allocated(setup.device) / 2**20 if setup.is_cuda else None
    return FitResult(
        config=config, history=tuple(history), best_epoch=best.epoch,
        stopped_early=stopped_early, fit_seconds=time.perf_counter() - t_fit,
        peak_memory_mb=peak, best_checkpoint=best_dir, last_checkpoint=last_dir,
        extras={"device": setup.describe(), "steps_per_epoch": steps,
                "compiled": net is not model},
    )


@torch.no_grad()
def validate(
    model: nn.Module, loss_fn: nn.Module, loader: Iterable, setup: DeviceSetup, tcfg: TrainConfig,
    *, scenes: Sequence[str] | None = None, scene_meter: SceneMeter | None = None,
    histograms: ThresholdHistograms | None = None,
) -> tuple[float, Metrics]:
    """Mean loss per image and confusion counts over the whole loader (no-data pixels out of
    the counts when `train.ignore_nodata`). With `scene_meter`, each item's counts also go to
    its scene, `scenes[i]` for the loader's i-th item; `histograms` collects the probability
    histograms (per scene when `scenes` is given) that give the counts at any threshold."""
    model.eval()
    meter = ConfusionMeter(tcfg.threshold)
    loss_sum = torch.zeros((), device=setup.device)
    n = 0
    for images, masks in loader:
        raw, x, y = _to_device(images, masks, setup, tcfg)
        with setup.autocast():
            logits = model(x)
        logits = logits.float()
        loss_sum += loss_fn(logits, y) * raw.shape[0]
        valid = ~nodata_mask(raw) if tcfg.ignore_nodata else None
        meter.update_from_logits(logits, y, valid)
        if scene_meter is not None:
            scene_meter.update_from_logits(scenes[n : n + raw.shape[0]], logits, y, valid)
        if histograms is not None:
            names = scenes[n : n + raw.shape[0]] if scenes is not None else ["val"] * len(raw)
            histograms.update(names, torch.sigmoid(logits), y, valid)
        n += raw.shape[0]
    if scenes is not None and n != len(scenes):
        raise ConfigError(f"validate: {len(scenes)} scene names for {n} validation items")
    return loss_sum.item() / max(n, 1), meter.metrics


def _to_device(
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
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def _finite_losses(losses: list[torch.Tensor], epoch: int, last_step: int) -> list[float]:
    """Read pending losses back; the first non-finite one raises with its own step number."""
    values = torch.stack(losses).tolist()
    first_step = last_step - len(values) + 1
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise DivergedError(epoch=epoch, step=first_step + i, loss=value)
    return values


class _Reporter:
    """Adapts the optional `progress` argument: None, a callable, or a rich Progress."""

    def __init__(self, progress: Any, epochs: int, steps: int):
        self.progress, self.epochs, self.steps = progress, epochs, steps
        self.task = None
        if progress is not None and hasattr(progress, "add_task"):
            self.task = progress.add_task(f"epoch 1/{epochs}", total=steps, loss=math.nan, ips=0.0)

    def __call__(self, info: StepInfo) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, completed=info.step, description=f"epoch {info.epoch}/{info.epochs}",
                loss=info.loss, ips=info.images_per_s,
            )
        elif self.progress is not None:
            self.progress(info)

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

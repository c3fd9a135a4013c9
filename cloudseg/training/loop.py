"""fit(): one training run, readable top to bottom (in the spirit of nanoGPT's train.py).

The loop receives objects (model, loss, loaders, callbacks), never names, so the CLI, the sweep
and a notebook call it the same way. On CUDA it trains with AMP and channels_last; on the CPU in
plain fp32, deterministically. The steps live in `epoch`, checkpointing in `callbacks`.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cloudseg.config import RunConfig, TrainConfig
from cloudseg.errors import ConfigError, OutOfMemoryError
from cloudseg.training.callbacks import Callback, Checkpoint, best_record, notify
from cloudseg.training.device import DeviceSetup, compiled, select_device
from cloudseg.training.epoch import (
    ProgressHook,
    StepInfo,
    Trainer,
    train_epoch,
    validate,
    validate_epoch,
)
from cloudseg.training.results import EpochRecord, FitResult
from cloudseg.training.schedule import make_scheduler

__all__ = ["Callback", "ProgressHook", "StepInfo", "fit", "seed_everything", "validate"]


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
    val_extents: np.ndarray | None = None,
) -> FitResult:
    """Train `model` for `config.train.epochs`, validating after each epoch.

    Batches are `(images uint16 (B,4,H,W), masks uint8 (B,1,H,W) {0,1})`. `progress` is a
    callable taking StepInfo, a rich Progress, or None (silent). Checkpoint bundles go to
    `checkpoint_dir/best` (best validation IoU) and `checkpoint_dir/last`.
    `val_scenes[i]`, the scene of the val loader's i-th item, gives per-scene figures (the
    threshold figures' `scene_ious`; with `train.val_metric` "scene", the per-scene mean IoU
    that picks the best epoch). `val_extents[i]` (y0, y1, x0, x1), the part of the i-th item
    inside its scene, limits the counts to it (`train.ignore_nodata: padding`).
    """
    t_fit, started_at = time.perf_counter(), time.time()
    tcfg = config.train
    seed_everything(tcfg.seed)
    setup = select_device(tcfg)
    steps = _steps_per_epoch(train_loader, val_loader, tcfg, val_scenes)
    trainer = _trainer(model, loss_fn, config, setup, steps)
    checkpoint = None if checkpoint_dir is None else Checkpoint(checkpoint_dir, model, config)
    watchers = [checkpoint, *callbacks] if checkpoint is not None else list(callbacks)

    history: list[EpochRecord] = []
    stopped_early, oom_detail = False, None
    try:
        with _run_mode(setup, tcfg.threads), _Reporter(progress, tcfg.epochs, steps) as report:
            for epoch in range(1, tcfg.epochs + 1):
                trained = train_epoch(trainer, train_loader, epoch, report)
                record = validate_epoch(trainer, val_loader, trained, val_scenes, val_extents)
                history.append(record)
                if notify(watchers, epoch, record):
                    stopped_early = True
                    break
    except torch.cuda.OutOfMemoryError as err:
        # Leave this block first: the exception's frames pin the batch tensors.
        oom_detail = str(err).splitlines()[0] if str(err) else "CUDA out of memory"
    if oom_detail is not None:
        del trainer  # with the error we raise, fit's frame lives on: it must hold no GPU memory
        _release(model, loss_fn)
        raise OutOfMemoryError(config.optim.batch_size, oom_detail)

    best = best_record(history, tcfg)  # at least one epoch ran (epochs >= 1)
    return FitResult(
        config=config, history=tuple(history), best_epoch=best.epoch,
        stopped_early=stopped_early, fit_seconds=time.perf_counter() - t_fit,
        peak_memory_mb=_peak_memory_mb(setup),
        best_checkpoint=None if checkpoint is None else checkpoint.best_dir,
        last_checkpoint=None if checkpoint is None else checkpoint.save_last(history[-1]),
        extras={"device": setup.describe(), "steps_per_epoch": steps,
                "fit_started_at": started_at,  # wall clock: where a sweep's gaps are measured
                "compiled": trainer.net is not model},
    )


def _steps_per_epoch(
    train_loader: Iterable, val_loader: Iterable, tcfg: TrainConfig,
    val_scenes: Sequence[str] | None,
) -> int:
    """Training steps per epoch (`train.max_steps_per_epoch` caps it); empty loaders and a
    scene metric without scenes are errors before any work.
    """
    steps = len(train_loader)  # type: ignore[arg-type]
    if tcfg.max_steps_per_epoch is not None:
        steps = min(steps, tcfg.max_steps_per_epoch)
    if steps == 0 or len(val_loader) == 0:  # type: ignore[arg-type]
        raise ConfigError("fit: the training and validation loaders must yield at least one batch")
    if tcfg.val_metric == "scene" and val_scenes is None:
        raise ConfigError("train.val_metric: 'scene' needs fit(..., val_scenes=[scene per "
                          "validation item]); cloudseg.training.build.run_training passes them")
    return steps


def _trainer(
    model: nn.Module, loss_fn: nn.Module, config: RunConfig, setup: DeviceSetup, steps: int
) -> Trainer:
    """Model and loss on the device, the optimiser, the per-step schedule and the grad scaler."""
    tcfg, ocfg = config.train, config.optim
    # torch takes a device and a memory format in one call; its stubs list them apart
    model = model.to(setup.device, memory_format=setup.memory_format)  # type: ignore[call-overload]
    # `net` runs the steps; `model` (the same parameters) is what checkpoints save, so a bundle
    # never holds torch.compile's wrapper names.
    net = compiled(model) if tcfg.compile and setup.is_cuda else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay,
        fused=True if setup.is_cuda else None,
    )
    return Trainer(
        model=model, net=net,
        loss_fn=loss_fn.to(setup.device),  # a loss may hold buffers (e.g. pos_weight)
        optimizer=optimizer, scheduler=make_scheduler(optimizer, ocfg, steps, tcfg.epochs),
        scaler=torch.amp.GradScaler("cuda", enabled=setup.needs_scaler),  # fp16 only
        setup=setup, config=config, steps=steps,
    )


@contextlib.contextmanager
def _run_mode(setup: DeviceSetup, threads: int | None) -> Iterator[None]:
    """CuDNN autotuning on CUDA (fixed input sizes), deterministic kernels on the CPU (free
    there), `train.threads` torch threads when set; the caller's settings come back
    afterwards, whatever happened.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    if setup.is_cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(setup.device)
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


def _release(model: nn.Module, loss_fn: nn.Module) -> None:
    """After an OOM: the caller may keep model and loss, but their GPU memory must go."""
    model.to("cpu")
    loss_fn.to("cpu")
    gc.collect()
    torch.cuda.empty_cache()


def _peak_memory_mb(setup: DeviceSetup) -> float | None:
    return torch.cuda.max_memory_allocated(setup.device) / 2**20 if setup.is_cuda else None


class _Reporter:
    """Adapts the optional `progress` argument: None, a callable, or a rich Progress; as a
    context manager, its bar is gone when fit leaves, however it leaves.
    """

    def __init__(self, progress: Any, epochs: int, steps: int) -> None:
        self.progress, self.epochs, self.steps = progress, epochs, steps
        self.task = None
        if progress is not None and hasattr(progress, "add_task"):
            self.task = progress.add_task(f"epoch 1/{epochs}", total=steps, loss=math.nan, ips=0.0)

    def __enter__(self) -> _Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

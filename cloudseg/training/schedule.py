"""The per-step learning-rate schedule `fit` steps after every batch."""

from __future__ import annotations

import math

import torch

from cloudseg.config import OptimConfig


def make_scheduler(
    optimizer: torch.optim.Optimizer, ocfg: OptimConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step learning-rate schedule: linear warmup, then cosine decay to 0 or constant;
    "onecycle" is torch's OneCycleLR with the warmup as its rising phase (default 30%).
    """
    total = steps_per_epoch * epochs
    warmup = min(ocfg.warmup_epochs * steps_per_epoch, total)
    if ocfg.schedule == "onecycle":
        pct = warmup / total if warmup else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=ocfg.lr, total_steps=max(total, 2), pct_start=min(pct, 0.99)
        )

    def factor(step: int) -> float:  # step = optimizer steps taken so far
        if step < warmup:
            return (step + 1) / warmup
        if ocfg.schedule == "constant":
            return 1.0
        done = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

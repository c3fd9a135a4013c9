"""Shared pieces of the sweep tests: a tiny study spec on the synthetic tree (crop 64, an
8-width U-Net, two epochs of three batches) whose space contains a choice that always fails
(`unet` rejects the fixed `model.base_width`), so one study shows complete, pruned and failed
trials."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def tiny_spec_dict(name: str = "tiny", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "metric": "iou",
        "direction": "maximize",
        "seed": 0,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "budget": {
            "epochs": 2, "train_fraction": 0.75, "crop": 64, "batches_per_epoch": 3,
            "max_val_patches": None, "trial_timeout": 120,
        },
        "execution": {"heartbeat_interval": 1, "grace_period": 3, "max_retry": 2},
        "fixed": {
            "model": {"name": "vanilla-unet", "base_width": 8},
            "optim": {"batch_size": 4, "schedule": "constant"},
            "train": {"device": "cpu", "amp": False, "channels_last": False, "seed": 0,
                      "normalisation": "band-stats"},
        },
        "space": {
            "model.name": {"type": "categorical", "choices": ["vanilla-unet", "unet"]},
            "loss.name": {"type": "categorical", "choices": ["bce", "dice", "weighted-bce"]},
            "loss.pos_weight": {"type": "float", "low": 0.5, "high": 2.0,
                                "relative_to": "measured_pos_weight"},
            "optim.lr": {"type": "float", "low": 0.003, "high": 0.03, "log": True},
        },
    }
    spec.update(overrides)
    return spec


def write_spec(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(study: str, storage: str, data: Path, cwd: Path) -> subprocess.Popen:
    """A real worker process (`python -m sweep.execution.workers`), as `sweep run --workers K`
    starts."""
    cmd = [sys.executable, "-m", "sweep.execution.workers", "--study", study, "--storage", storage,
           "--data", str(data)]
    log = open(cwd / f"worker-{study}.log", "ab")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ), stdout=log, stderr=log)


@contextlib.contextmanager
def trial_threads(n: int = 1):
    """Trials on one torch thread: tiny models gain nothing from more, and on a busy 2-core
    machine spinning intra-op threads make every trial several times slower."""
    before = os.environ.get("CLOUDSWEEP_TRIAL_THREADS")
    os.environ["CLOUDSWEEP_TRIAL_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CLOUDSWEEP_TRIAL_THREADS", None)
        else:
            os.environ["CLOUDSWEEP_TRIAL_THREADS"] = before

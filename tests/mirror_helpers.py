"""Shared pieces of the W&B mirror tests: a sweep-like study with the contract's user attrs,
wandb's own reader for run folders, and a guard that fails any non-loopback connection.

Real optuna studies in a real SQLite file, real wandb in offline mode: no training needed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from PIL import Image

from sweep.mirror.media import save_overlay_masks

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIG = {"model": {"name": "unet", "encoder": "resnet18"}, "loss": {"name": "dice"}}


def forbid_network(monkeypatch):
    """Fixture body: offline mode, and any connect() to a non-loopback address fails the test."""
    assert os.environ["WANDB_MODE"] == "offline"
    assert "WANDB_API_KEY" not in os.environ
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                attempts.append(address)
                raise OSError(f"test forbids network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (check(s, a), real_connect(s, a))[1])
    monkeypatch.setattr(
        socket.socket, "connect_ex", lambda s, a: (check(s, a), real_connect_ex(s, a))[1]
    )
    yield
    assert not attempts, f"network access attempted: {attempts}"


def epoch(n: int, iou: float) -> dict:
    tp, fp, fn, tn = 10 * n, 5, 5, 100
    return {
        "epoch": n,
        "train_loss": 1.0 / n,
        "val_loss": 1.5 / n,
        "seconds": 0.5,
        "images_per_s": 40.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "iou": iou,
        "dice": 2 * iou / (1 + iou),
    }


def write_overlays(tmp: Path, number: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(number)
    image = rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    gt = np.zeros((2, 16, 16), np.uint8)
    gt[:, 4:10, 2:12] = 1
    pred = np.roll(gt, 1, axis=1)
    masks = save_overlay_masks(tmp / f"masks{number}.npz", image, pred, gt, ["p1", "p2"])
    png = tmp / f"overlay{number}.png"
    Image.fromarray(image[0]).save(png)
    return png, masks


def objective_for(tmp: Path, store, outcomes: dict[int, str]):
    """A sweep-like objective storing the contract's user attrs; outcome per trial number."""

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("loss", ["dice", "bce"])
        history = [epoch(1, 0.4), epoch(2, 0.6)]
        trial.set_user_attr("config", CONFIG)
        trial.set_user_attr("history", history)
        trial.set_user_attr("subset_seed", 7)
        for e in history:
            trial.report(e["iou"], e["epoch"])
        outcome = outcomes.get(trial.number, "complete")
        if outcome == "failed":
            trial.set_user_attr("failure", "oom")
            trial.set_user_attr("failure_message", "CUDA out of memory at batch 3")
            raise RuntimeError("out of memory")
        trial.set_user_attr("best_epoch", 2)
        names = ("tp", "fp", "fn", "tn", "iou", "dice")
        trial.set_user_attr("metrics", {k: history[-1][k] for k in names})
        trial.set_user_attr("fit_seconds", 1.25)
        png, masks = write_overlays(tmp, trial.number)
        ids = {
            key: upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            for key, path in (("overlay", png), ("overlay_masks", masks))
        }
        trial.set_user_attr("artifacts", ids)
        if outcome == "pruned":
            raise optuna.TrialPruned()
        return history[-1]["iou"] + lr * 0

    return objective


def make_study(url: str, tmp: Path, store, name="demo", n=3, outcomes=None, callbacks=()):
    study = optuna.create_study(
        storage=url, study_name=name, direction="maximize", load_if_exists=True
    )
    outcomes = {1: "pruned", 2: "failed"} if outcomes is None else outcomes
    study.optimize(
        objective_for(tmp, store, outcomes),
        n_trials=n,
        catch=(RuntimeError,),
        callbacks=list(callbacks),
    )
    return study


def inspect(run_dir: Path) -> dict:
    """A run folder read with wandb's reader: run record, history rows, final summary.

    Runs wandb-core's transaction-log inspector with the arguments `wandb leet inspect` gives
    it, minus the CLI's Python start-up (seconds on a busy 2-core machine)."""
    from wandb.util import get_core_path

    (run_file,) = run_dir.glob("run-*.wandb")

    def leet(*flags: str) -> str:
        args = [get_core_path(), "leet", "inspect", "--no-observability", *flags]
        done = subprocess.run(
            [*args, "--run-file", str(run_file), str(run_dir.parent)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    records = [json.loads(line) for line in leet("--json").splitlines() if line.strip()]
    run = next(r["run"] for r in records if r["type"] == "run")
    history = {
        r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"
    }
    return {"run": run, "history": history, **json.loads(leet("--summary", "--json"))}


def run_dirs(wandb_dir: Path) -> list[Path]:
    return sorted(p for p in (wandb_dir / "wandb").glob("offline-run-*") if p.is_dir())


def artifact_store(sweep_dir: Path) -> FileSystemArtifactStore:
    """The sweep's `artifacts/` folder next to its database, as the runner lays it out."""
    (sweep_dir / "artifacts").mkdir(exist_ok=True)
    return FileSystemArtifactStore(str(sweep_dir / "artifacts"))


# Fixtures shared by the mirror test modules (loaded as a plugin by tests/conftest.py).
@pytest.fixture
def no_network(monkeypatch):
    yield from forbid_network(monkeypatch)


@pytest.fixture
def sweep_dir(tmp_path):
    return tmp_path


@pytest.fixture
def store(sweep_dir):
    return artifact_store(sweep_dir)

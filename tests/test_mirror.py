"""W&B mirror: real optuna studies in a real SQLite file, real wandb in offline mode.

Runs are read back with wandb's own reader (`wandb leet inspect --json`, which decodes the
.wandb transaction log) — not by grepping files. Nothing may reach the network: the module
asserts offline mode and guards socket.connect against any non-loopback address.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from PIL import Image

from cloudseg.errors import ConfigError
from sweep.mirror import mirror_study, mirrored_runs, planned_run_path, resolve_mode
from sweep.mirror_background import BackgroundMirror, wandb_hook
from sweep.mirror_media import load_overlay_masks, save_overlay_masks
from sweep.mirror_payload import content_hash, history_rows, trial_run_id
from sweep.mirror_state import MirrorState

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIG = {"model": {"name": "unet", "encoder": "resnet18"}, "loss": {"name": "dice"}}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline mode, and any connect() to a non-loopback address fails the test."""
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
    return {"epoch": n, "train_loss": 1.0 / n, "val_loss": 1.5 / n, "seconds": 0.5,
            "images_per_s": 40.0, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "iou": iou,
            "dice": 2 * iou / (1 + iou)}


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
    study = optuna.create_study(storage=url, study_name=name, direction="maximize",
                                load_if_exists=True)
    outcomes = {1: "pruned", 2: "failed"} if outcomes is None else outcomes
    study.optimize(objective_for(tmp, store, outcomes), n_trials=n, catch=(RuntimeError,),
                   callbacks=list(callbacks))
    return study


def inspect(run_dir: Path) -> dict:
    """A run folder read with wandb's reader: run record, history rows, final summary.

    Runs wandb-core's transaction-log inspector with the arguments `wandb leet inspect` gives
    it, minus the CLI's Python start-up (seconds on a busy 2-core machine)."""
    from wandb.util import get_core_path

    (run_file,) = run_dir.glob("run-*.wandb")

    def leet(*flags: str) -> str:
        args = [get_core_path(), "leet", "inspect", "--no-observability", *flags]
        done = subprocess.run([*args, "--run-file", str(run_file), str(run_dir.parent)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    records = [json.loads(line) for line in leet("--json").splitlines() if line.strip()]
    run = next(r["run"] for r in records if r["type"] == "run")
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records
               if r["type"] == "history"}
    return {"run": run, "history": history, **json.loads(leet("--summary", "--json"))}


def run_dirs(wandb_dir: Path) -> list[Path]:
    return sorted(p for p in (wandb_dir / "wandb").glob("offline-run-*") if p.is_dir())


@pytest.fixture
def sweep_dir(tmp_path):
    (tmp_path / "artifacts").mkdir()
    return tmp_path


@pytest.fixture
def store(sweep_dir):
    return FileSystemArtifactStore(str(sweep_dir / "artifacts"))


def test_one_run_per_trial_with_config_history_summary_and_masks(sweep_dir, store):
    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    study = make_study(url, sweep_dir, store)
    wandb_dir = sweep_dir / "wandb-runs"

    report = mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir, artifact_store=store)

    assert report.ok and report.mirrored == [0, 1, 2], report
    assert "wandb sync" in str(report)
    runs = {r["run_id"]: r for r in map(inspect, run_dirs(wandb_dir))}
    records = mirrored_runs(url, "demo")
    assert sorted(runs) == sorted(
        [r.run_id for r in records.values()] + [report.summary_run.split("/")[-1]]
    )
    t0 = runs[records[0].run_id]
    trial = study.trials[0]
    assert t0["run"]["run_group"] == "demo" and t0["run"]["job_type"] == "trial"
    assert t0["config"]["lr"] == pytest.approx(trial.params["lr"])
    assert t0["config"]["loss"] == trial.params["loss"]
    assert t0["config"]["resolved"] == CONFIG
    assert t0["config"]["trial_number"] == 0
    assert sorted(t0["history"]) == [1, 2]  # the epoch is the step
    assert t0["history"][1]["val/iou"] == pytest.approx(0.4)
    assert t0["history"][2]["train/loss"] == pytest.approx(0.5)
    summary = t0["summary"]
    assert summary["state"] == "complete" and summary["best/iou"] == pytest.approx(0.6)
    assert summary["objective"] == pytest.approx(0.6) and summary["best_epoch"] == 2
    assert summary["val/iou"] == pytest.approx(0.6)  # final epoch
    overlay = summary["overlay"]  # two patches, each with both masks for W&B's mask viewer
    assert len(overlay["all_masks"]) == 2
    assert set(overlay["all_masks"][0]) == {"prediction", "ground_truth"}
    assert "model:unet" in t0["tags"] and "complete" in t0["tags"] and t0["exit_code"] == 0

    pruned, failed = runs[records[1].run_id], runs[records[2].run_id]
    assert pruned["summary"]["state"] == "pruned" and "pruned" in pruned["tags"]
    assert failed["summary"]["state"] == "failed" and failed["summary"]["failure"] == "oom"
    assert "failure:oom" in failed["tags"] and failed["exit_code"] == 1
    assert sorted(failed["history"]) == [1, 2]

    study_run = next(r for r in runs.values() if r["run"]["job_type"] == "study")
    assert study_run["summary"]["trials"] == 3 and study_run["summary"]["trials_failed"] == 1
    assert study_run["summary"]["trials"]  # the table is logged as a W&B table
    table = {k: v for k, v in study_run["history"][0].items() if k.startswith("trials.")}
    assert table["trials._type"] == "table-file" and table["trials.nrows"] == 3
    study_dir = next(d for d in run_dirs(wandb_dir) if d.name.endswith("-study"))
    logged = json.loads((study_dir / "files" / table["trials.path"]).read_text())
    assert {"lr", "loss", "state", "best/iou", "run_id"} <= set(logged["columns"])
    by_trial = {row[0]: dict(zip(logged["columns"], row, strict=True)) for row in logged["data"]}
    assert by_trial[2]["state"] == "failed" and by_trial[0]["best/iou"] == pytest.approx(0.6)
    planned = planned_run_path(url, "demo", 0)
    assert records[0].run_path == planned == f"cloudsweep/{records[0].run_id}"


def test_second_pass_uploads_nothing_and_reruns_resume_the_same_runs(storage_url, tmp_path, store):
    make_study(storage_url, tmp_path, store, n=2, outcomes={1: "pruned"})
    first_dir, other_machine = tmp_path / "wb1", tmp_path / "wb2"
    first = mirror_study(storage_url, "demo", mode="offline", wandb_dir=first_dir,
                         artifact_store=store)
    ids = {r.run_id for r in mirrored_runs(storage_url, "demo").values()}
    assert first.mirrored == [0, 1] and len(ids) == 2 and len(run_dirs(first_dir)) == 3

    again = mirror_study(storage_url, "demo", mode="offline", wandb_dir=first_dir,
                         artifact_store=store)
    elsewhere = mirror_study(storage_url, "demo", mode="offline", wandb_dir=other_machine)
    assert again.mirrored == [] and again.up_to_date == [0, 1] and again.ok
    assert elsewhere.mirrored == [] and not run_dirs(other_machine)
    assert len(run_dirs(first_dir)) == 3  # no new run folder at all

    make_study(storage_url, tmp_path, store, n=1, outcomes={})  # one more trial: only it goes up
    assert mirror_study(storage_url, "demo", mode="offline", wandb_dir=first_dir).mirrored == [2]

    forced = mirror_study(storage_url, "demo", mode="offline", wandb_dir=other_machine,
                          force=True, summary=False, trials=[0])
    assert forced.mirrored == [0]
    (rerun,) = [inspect(d)["run_id"] for d in run_dirs(other_machine)]
    assert rerun == mirrored_runs(storage_url, "demo")[0].run_id and rerun in ids


def test_same_study_name_in_another_database_gets_other_run_ids(tmp_path, store):
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    for url in urls:
        optuna.create_study(storage=url, study_name="demo")
    ids = [planned_run_path(url, "demo", 0) for url in urls]
    assert ids[0] != ids[1] and ids[0] == planned_run_path(urls[0], "demo", 0)
    with pytest.raises(ConfigError, match="no study 'dmeo' in the storage; available: demo"):
        mirror_study(urls[0], "dmeo", mode="offline")


def test_failing_wandb_never_stops_the_sweep_and_a_later_pass_catches_up(
    sweep_dir, store, monkeypatch, caplog
):
    import wandb

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    wandb_dir = sweep_dir / "wandb-runs"
    calls = []

    def down(*args, **kwargs):
        calls.append(kwargs.get("id"))
        raise wandb.errors.CommError("W&B is down")

    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        patch.setattr(wandb, "init", down)
        mirror = BackgroundMirror(url, mode="offline", wandb_dir=wandb_dir, artifact_store=store,
                                  isolation="thread")
        study = make_study(url, sweep_dir, store, n=3, outcomes={}, callbacks=[mirror])
        assert not mirror.close(timeout=30)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
        assert calls and sorted(n for _, n in mirror.failed) == [0, 1, 2]
        once = [r for r in caplog.records if "logged once" in r.getMessage()]
        assert len(once) == 1
        direct = mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir)
        assert direct.aborted and len(direct.failed) == 3 and not direct.mirrored
    assert not run_dirs(wandb_dir) and mirrored_runs(url, "demo") == {}

    later = mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir, artifact_store=store)
    assert later.ok and later.mirrored == [0, 1, 2] and later.summary_run
    assert sorted(mirrored_runs(url, "demo")) == [0, 1, 2]
    final = mirror_study(url, "demo", mode="offline", wandb_dir=wandb_dir)
    assert final.mirrored == [] and final.up_to_date == [0, 1, 2]


def test_wandb_hook_retries_its_failed_trials_when_closing(sweep_dir, store, monkeypatch):
    import wandb

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    real_init, calls = wandb.init, []

    def flaky(*args, **kwargs):  # W&B answers again after two failures
        calls.append(kwargs["id"])
        if len(calls) <= 2:
            raise wandb.errors.CommError("W&B is down")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", flaky)
    study = optuna.create_study(storage=url, study_name="demo", direction="maximize")
    study.set_user_attr("artifact_dir", str(sweep_dir / "artifacts"))
    options = {"mode": "offline", "wandb_dir": str(sweep_dir / "wb"), "isolation": "thread"}
    mirror = wandb_hook(study, options)
    make_study(url, sweep_dir, store, n=2, outcomes={}, callbacks=[mirror])
    assert mirror.close(timeout=60) and not mirror.failed
    records = mirrored_runs(url, "demo")
    assert sorted(records) == [0, 1]
    assert sorted(calls[:2]) == sorted(calls[2:4]) == sorted(r.run_id for r in records.values())
    run = inspect(Path(records[0].run_dir))  # images found via the study's artifact_dir attr
    assert len(run["summary"]["overlay"]["all_masks"]) == 2
    assert mirror.close(timeout=1)  # the exit-time close is a no-op now


def test_background_process_mirrors_each_trial(sweep_dir, store):
    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    wandb_dir = sweep_dir / "wandb-runs"
    with BackgroundMirror(url, mode="offline", wandb_dir=wandb_dir, artifact_store=store) as mirror:
        make_study(url, sweep_dir, store, n=1, outcomes={}, callbacks=[mirror])
        assert mirror.isolation == "process"
    assert not mirror.failed and mirror.mirrored == [("demo", 0)]
    records = mirrored_runs(url, "demo")
    assert sorted(records) == [0] and records[0].mode == "offline"
    found = {inspect(d)["run_id"] for d in run_dirs(wandb_dir)}
    assert {r.run_id for r in records.values()} < found  # + the study summary run


def test_api_key_never_reaches_storage_runs_or_messages(sweep_dir, store, monkeypatch):
    key = "k" * 40
    monkeypatch.setenv("WANDB_API_KEY", key)
    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    study = optuna.create_study(storage=url, study_name="demo")
    trial = study.ask()
    trial.set_user_attr("failure", "bug")
    trial.set_user_attr("failure_message", f"401 for api_key={key}")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert resolve_mode("online") == "offline"  # WANDB_MODE=offline wins over a present key

    report = mirror_study(url, "demo", mode="online", wandb_dir=sweep_dir / "wb")

    assert report.mirrored == [0] and report.mode == "offline"
    (run,) = [inspect(d) for d in run_dirs(sweep_dir / "wb") if d.name.endswith("-t0")]
    assert run["summary"]["failure_message"] == "401 for api_key=***"
    with MirrorState(url) as state:
        assert key not in repr(state.all("demo"))
    files = [p for p in sweep_dir.rglob("*") if p.is_file() and p.suffix != ".db"]
    assert not [p for p in files if key.encode() in p.read_bytes()]


def test_resolve_mode(monkeypatch, tmp_path):
    assert resolve_mode("off") == "off"
    assert resolve_mode("auto") == "offline"
    with pytest.raises(ValueError, match="online, offline, off or auto"):
        resolve_mode("sometimes")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("online") == "offline"  # no key anywhere: write offline folders
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password secret\n")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("online") == "off"


def test_payload_falls_back_to_intermediate_values_and_ignores_own_attr():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    trial = create_trial(state=TrialState.PRUNED, params={"lr": 0.1},
                         distributions={"lr": FloatDistribution(0.01, 1.0)},
                         intermediate_values={1: 0.2, 3: 0.5})
    assert history_rows(trial) == [(1, {"objective": 0.2}), (3, {"objective": 0.5})]
    before = content_hash(trial)
    trial.set_user_attr("wandb_run", "cloudsweep/x")
    assert content_hash(trial) == before
    trial.set_user_attr("failure", "oom")
    assert content_hash(trial) != before
    assert len(trial_run_id("a study/with:odd#chars" * 5, "abc123", 12345)) <= 64


def test_overlay_masks_bundle_round_trip_and_shape_check(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.eye(8, dtype=bool)
    path = save_overlay_masks(tmp_path / "overlay_masks.npz", image, mask, ~mask)
    (patch,) = load_overlay_masks(path.read_bytes())
    assert patch["prediction"].sum() == 8 and patch["ground_truth"].sum() == 56
    with pytest.raises(ValueError, match="same H, W"):
        save_overlay_masks(tmp_path / "bad.npz", image, mask[:4], mask)


def test_importing_the_mirror_does_not_import_wandb():
    code = "import sys, sweep.mirror, sweep.mirror_background; print('wandb' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_wandb_hook_is_registered_for_sweep_run():
    hooks = pytest.importorskip("sweep.hooks")
    assert "wandb" in hooks.available_hooks()


def test_a_hung_wandb_blocks_neither_trials_nor_close(sweep_dir, store, monkeypatch, caplog):
    import threading

    import wandb

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    release = threading.Event()

    def hung(*args, **kwargs):
        release.wait(30)
        raise wandb.errors.CommError("timed out")

    monkeypatch.setattr(wandb, "init", hung)
    mirror = BackgroundMirror(url, mode="offline", wandb_dir=sweep_dir / "wb", isolation="thread")
    study = make_study(url, sweep_dir, store, n=2, outcomes={}, callbacks=[mirror])
    assert len(study.trials) == 2  # both trials ran while the first upload hung
    with caplog.at_level(logging.WARNING):
        assert not mirror.close(timeout=0.5)
    assert any("still busy" in r.getMessage() for r in caplog.records)
    release.set()


def test_sweep_mirror_command_uploads_what_is_missing(sweep_dir, store):
    from typer.testing import CliRunner

    from sweep.cli import app

    url = f"sqlite:///{sweep_dir / 'sweeps.db'}"
    make_study(url, sweep_dir, store, n=1, outcomes={})
    args = ["mirror", "--study", "demo", "--storage", url, "--wandb-dir", str(sweep_dir / "wb")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "(offline): 1 mirrored, 0 up to date, 0 failed" in first.output
    assert "wandb sync" in first.output
    again = CliRunner().invoke(app, [*args, "--wandb", "offline"])
    assert again.exit_code == 0 and "0 mirrored, 1 up to date" in again.output
    missing = CliRunner().invoke(app, [*args[:2], "nope", *args[3:]])
    assert missing.exit_code == 2 and "no study 'nope'" in missing.output


EXIT_SCRIPT = """
import sys, optuna
from sweep.mirror_background import BackgroundMirror
url, wandb_dir = sys.argv[1:3]
study = optuna.create_study(storage=url, study_name="demo")
mirror = BackgroundMirror(url, mode="offline", wandb_dir=wandb_dir)
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, callbacks=[mirror])
"""  # no close(): the exit handler must still finish the upload and the study run


def test_a_sweep_that_forgets_close_still_mirrors_at_exit(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url, str(tmp_path / "wb")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(mirrored_runs(url, "demo")) == [0]
    assert sorted(d.name.rsplit("-", 1)[-1] for d in run_dirs(tmp_path / "wb")) == ["study", "t0"]

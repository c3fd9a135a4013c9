"""The background W&B mirror: never blocks or fails a trial, retries, closes at exit.

Fault injection replaces the real library's entry point, `wandb.init`, in this process (thread
isolation); the process-isolated worker runs the real wandb in offline mode.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sweep.mirror import BackgroundMirror, MirrorOptions, mirror_study, mirrored_runs, wandb_hook
from tests.mirror_helpers import (
    inspect,
    make_study,
    run_dirs,
)

# Fixtures `sweep_dir` and `store` come from tests/mirror_helpers.py (a conftest plugin).
pytestmark = pytest.mark.usefixtures("no_network")


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
        mirror = BackgroundMirror(
            url, mode="offline", wandb_dir=wandb_dir, artifact_store=store, isolation="thread"
        )
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
    options = MirrorOptions(mode="offline", wandb_dir=sweep_dir / "wb", isolation="thread",
                            storage=url)
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


def test_wandb_hook_is_registered_for_sweep_run():
    hooks = pytest.importorskip("sweep.hooks")
    assert "wandb" in hooks.available_hooks()


def test_wandb_options_reach_a_worker_process_typed():
    from sweep.errors import SweepError
    from sweep.hooks import decode_hooks, encode_hooks

    options = MirrorOptions(mode="offline", project="p", wandb_dir=Path("/tmp/wb"))
    text = encode_hooks({"wandb": options})  # the worker process's --hooks argument
    assert decode_hooks(text) == {"wandb": options}
    with pytest.raises(SweepError, match="hook wandb: mode: Input should be 'online'"):
        decode_hooks('{"wandb": {"mode": "sometimes"}}')
    with pytest.raises(SweepError, match="hook wandb: projct: unknown key"):
        decode_hooks('{"wandb": {"projct": "p"}}')


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


EXIT_SCRIPT = """
import sys, optuna
from sweep.mirror import BackgroundMirror
url, wandb_dir = sys.argv[1:3]
study = optuna.create_study(storage=url, study_name="demo")
mirror = BackgroundMirror(url, mode="offline", wandb_dir=wandb_dir)
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, callbacks=[mirror])
"""  # no close(): the exit handler must still finish the upload and the study run


def test_a_sweep_that_forgets_close_still_mirrors_at_exit(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, url, str(tmp_path / "wb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(mirrored_runs(url, "demo")) == [0]
    assert sorted(d.name.rsplit("-", 1)[-1] for d in run_dirs(tmp_path / "wb")) == ["study", "t0"]

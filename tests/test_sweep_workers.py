"""Real worker processes on a real SQLite file: a worker killed with SIGKILL mid-trial has its
trial failed by the heartbeat check and run again with the same params (and the same training
subset); Ctrl-C marks the running trial FAILED "interrupted" (never left RUNNING) and a rerun
resumes; four processes hammering one SQLite file never see "database is locked"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cloudseg.errors import CacheError, DivergedError, LayoutError, OutOfMemoryError
from sweep.cli import app
from sweep.execution.objective import Objective
from sweep.execution.runner import create_study, prepare, run_study
from sweep.execution.trial_process import TrialFailure, classify, run_isolated
from sweep.storage import open_storage
from sweep.study.spec import parse_spec
from tests.sweep_helpers import start_worker, tiny_spec_dict, trial_threads


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_trial():
    with trial_threads(1):
        yield


def slow_spec(name: str, epochs: int = 3):
    """Three epochs and no pruning or failing choice: time enough to interrupt a trial."""
    return parse_spec(tiny_spec_dict(
        name=name,
        pruner={"name": "none"},
        budget={"epochs": epochs, "train_fraction": 0.75, "crop": 64, "batches_per_epoch": 3},
        space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
               "loss.name": {"type": "categorical", "choices": ["bce", "dice"]}},
    ), f"{name}.yaml")


def wait_for_running_trial(url: str, name: str, proc: subprocess.Popen, timeout: float = 120):
    """The first RUNNING trial once it has reported an epoch (so it is mid-trial)."""
    study = optuna.load_study(study_name=name, storage=url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running and running[0].intermediate_values:
            return running[0]
        assert proc.poll() is None, f"worker exited early with {proc.returncode}"
        time.sleep(0.2)
    raise AssertionError("no trial reached its first epoch in time")


def started(spec, tmp_path, synthetic_root, target: int) -> str:
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    root = prepare(spec, target, url, synthetic_root)
    create_study(spec, target, url, root)
    return url


def test_killed_worker_trial_is_retried_with_the_same_params(tmp_path, synthetic_root):
    spec = slow_spec("killed")
    url = started(spec, tmp_path, synthetic_root, target=2)
    worker = start_worker("killed", url, synthetic_root, tmp_path)
    victim = wait_for_running_trial(url, "killed", worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    time.sleep(spec.execution.grace_period + 1)  # let its heartbeat go stale

    run_study(spec, 2, storage=url, data=synthetic_root, progress=False)
    study = optuna.load_study(study_name="killed", storage=url)
    trials = study.get_trials()
    assert study.trials[victim.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == victim.params
    assert retry.user_attrs["subset_seed"] == victim.user_attrs["subset_seed"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_ctrl_c_marks_the_trial_interrupted_and_a_rerun_resumes(tmp_path, synthetic_root):
    spec = slow_spec("interrupted", epochs=12)  # still running after `sweep status` below
    url = started(spec, tmp_path, synthetic_root, target=1)
    worker = start_worker("interrupted", url, synthetic_root, tmp_path)
    trial = wait_for_running_trial(url, "interrupted", worker)
    status = CliRunner().invoke(app, ["status", "--storage", url])
    rows = [ln for ln in status.output.splitlines() if ln.startswith(f"│ {trial.number} ")]
    assert "running trials" in status.output and any("s ago" in ln for ln in rows), status.output
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=60) == 130

    study = optuna.load_study(study_name="interrupted", storage=url)
    stopped = study.trials[trial.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["failure"] == "interrupted"
    assert not study.get_trials(states=(TrialState.RUNNING,))

    summary = run_study(spec, 1, storage=url, data=synthetic_root, progress=False)
    assert summary.complete + summary.pruned == 1 and summary.failed == 1


HAMMER = """
import sys, optuna
from sweep.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name="hammer", storage=open_storage(sys.argv[1]))
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    for step in range(3):
        trial.report(x, step)
    trial.set_user_attr("history", [x] * 20)
    return x
study.optimize(objective, n_trials=15)
"""


def test_four_processes_on_one_sqlite_file_never_see_a_locked_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    optuna.create_study(study_name="hammer", storage=open_storage(url))
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, url], stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(errors)
    assert not any("locked" in e for e in errors)
    study = optuna.load_study(study_name="hammer", storage=url)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 60


def test_failure_classes():
    assert classify(OutOfMemoryError(32, "CUDA out of memory")) == "oom"
    assert classify(DivergedError(2, 5, float("nan"))) == "diverged"
    assert classify(LayoutError("/data", ["missing train_red"])) == "data"
    assert classify(CacheError("stale cache")) == "data"
    assert classify(RuntimeError("shape mismatch")) == "bug"


def test_oom_completes_with_the_worst_value_so_the_sampler_avoids_it(synthetic_root):
    spec = slow_spec("oom")
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    value = Objective(spec, synthetic_root, None, {}, storage)._failed(
        trial, TrialFailure("oom", "out of memory at batch size 32")
    )
    study.tell(trial, value)
    frozen = study.trials[0]
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.0
    assert frozen.user_attrs["failure"] == "oom"
    with pytest.raises(TrialFailure):  # any other class fails the trial (the study goes on)
        Objective(spec, synthetic_root, None, {}, storage)._failed(study.ask(),
                                                                   TrialFailure("bug", "x"))


def test_a_trial_over_its_time_limit_fails_as_timeout(synthetic_root, tmp_path):
    from sweep.execution.objective import trial_config

    config = trial_config(slow_spec("slow"), {"optim.lr": 0.003}, synthetic_root, 0)
    with pytest.raises(TrialFailure) as failure:
        run_isolated(config, tmp_path, lambda *_: False, timeout=0.2)
    assert failure.value.kind == "timeout"



def test_local_workers_get_the_storage_url_through_the_environment_not_argv(tmp_path,
                                                                             monkeypatch):
    """`ps` shows argv to every user of the machine: a password in the URL must not be there.
    The "interpreter" launched is a script that records its argv and environment, so what the
    worker process would be given is read without racing its exit."""
    from sweep.execution.workers import STORAGE_ENV, launch

    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\nenv > {tmp_path}/env\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    url = f"sqlite:///{tmp_path / 'nothing-here.db'}?password=s3cret"
    (proc,) = launch(1, "no-such-study", url, data=tmp_path, timeout=None, hooks=None)
    assert proc.wait(timeout=30) == 0
    argv = (tmp_path / "argv").read_text()
    assert "-m sweep.execution.workers --study no-such-study" in argv and "s3cret" not in argv
    assert f"{STORAGE_ENV}={url}" in (tmp_path / "env").read_text().splitlines()


def test_a_retried_trial_draws_the_training_subset_of_the_trial_it_retries(tmp_path):
    from sweep.execution.objective import origin_number

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'retry.db'}")
    study = optuna.create_study(storage=storage, direction="maximize")
    for _ in range(3):
        study.tell(study.ask(), 0.5)
    # What RetryHeartbeatStaleTrialCallback adds for a stale trial 1: a waiting copy of it.
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING,
                                              system_attrs={"failed_trial": 1}))
    retry, fresh = study.ask(), study.ask()
    assert (retry.number, fresh.number) == (3, 4)
    assert origin_number(storage, retry) == 1
    assert origin_number(storage, fresh) == 4


def test_every_module_the_forkserver_preloads_exists():
    # The forkserver skips a preload it cannot import without a word (a renamed module would
    # then load in every trial instead of once).
    import importlib.util

    from sweep.execution.trial_process import PRELOAD

    assert [name for name in PRELOAD if importlib.util.find_spec(name) is None] == []


@pytest.mark.parametrize("model", ["vanilla-unet", "unet"])
def test_a_trial_imports_nothing_the_forkserver_did_not(model, synthetic_root):
    """After the forkserver's preload for `model`, a whole trial (build, one epoch, the bundle
    and its images: `run_trial`, what a trial process runs) opens the cache once and imports
    no module itself: each import would cost every trial (torch's
    and smp's seconds, numpy's lazy submodules 20 ms); smp is preloaded only for smp's models.
    """
    from sweep.execution.trial_process import preload_for

    preload = preload_for([model])
    assert ("segmentation_models_pytorch" in preload) == (model == "unet")
    code = f"""
import sys, tempfile
from pathlib import Path
for name in {preload!r}:
    __import__(name)
import cloudseg.data.cache as cache_module
from cloudseg import RunConfig
from sweep.execution.trial_process import run_trial
opens, fingerprint = [], cache_module.fingerprint
cache_module.fingerprint = lambda *a, **k: opens.append(1) or fingerprint(*a, **k)
config = RunConfig().with_overrides({{
    "model.name": {model!r}, "model.base_width": 4 if {model!r} == "vanilla-unet" else None,
    "model.encoder": "resnet18" if {model!r} == "unet" else "resnet34",
    "data.root": {str(synthetic_root)!r}, "data.crop": 64, "data.max_val_patches": 2,
    "train.epochs": 1, "train.max_steps_per_epoch": 1, "optim.batch_size": 2,
    "train.device": "cpu", "train.normalisation": "band-stats",
}}, "test")
out = Path(tempfile.mkdtemp())
from cloudseg import open_run_cache
open_run_cache(config)  # packed already, as `sweep run` leaves it
opens.clear()
before = set(sys.modules)
files = run_trial(config, out, [], True, lambda result: None)
print(sorted(set(sys.modules) - before))
print(len(opens), sorted(files))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    imported, opened = out.strip().splitlines()[-2:]
    assert imported == "[]"
    # the cache is opened once per trial (its fingerprint stats every training file), and
    # the overlay was drawn from it
    assert opened == "1 ['checkpoint', 'overlay', 'overlay_masks']"

"""`slurm/sweep-worker.sbatch` on a real SLURM (the one-node cluster `.ci/run` starts) with the
study on PostgreSQL: an array of three workers finishes the study's exact target with no params
run twice; `scancel` of a task mid-trial and a task's `--time` limit both send SIGTERM, and the
trial it stopped is retried with the same params, the target still exact.

The time-limit job is submitted first (module fixture) and waits out its one-minute limit (SLURM
counts minutes and checks every 30 s) with its trial stopped (SIGSTOP: no CPU) while the array
test runs; a second worker of that study waits (the target's one slot is held) to take the retry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from sweep.execution.join import join_or_create
from sweep.record import FailureKind, load
from sweep.storage import open_storage
from tests.fixtures.storage import create_database, drop_database, server_url
from tests.slurm_helpers import (
    JOB_SCRIPT,
    cancelled_at_exit,
    job_env,
    job_outputs,
    require_slurm,
    sbatch,
    trial_processes,
    wait_until_done,
)
from tests.sweep_helpers import tiny_spec_dict, write_spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def create_study(folder: Path, url: str, name: str, trials: int, data: Path,
                 epochs: int = 3) -> str:
    """A study of short trials (`epochs` of 3 batches, no pruning) in `url`."""
    spec = write_spec(folder, tiny_spec_dict(
        name=name, pruner={"name": "none"},
        budget={"epochs": epochs, "train_fraction": 0.75, "crop": 64, "batches_per_epoch": 3,
                "max_val_patches": 2, "trial_timeout": 300},
        space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
               "loss.name": {"type": "categorical", "choices": ["bce", "dice"]}},
    ))
    return join_or_create(str(spec), url, trials=trials, data=data)


def trials_of(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def running_trial_of(url: str, name: str, worker: str, timeout: float) -> FrozenTrial:
    """The first trial `worker` runs, once it has trained an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in trials_of(url, name):
            if (t.state == TrialState.RUNNING and t.intermediate_values
                    and load(t, ("worker",)).worker == worker):
                return t
        time.sleep(0.2)
    raise AssertionError(f"{worker} ran no trial in {timeout:.0f}s")


def assert_retried_once_with_same_params(trials: list[FrozenTrial], number: int, target: int,
                                         stopped_worker: str) -> None:
    killed = trials[number]
    assert killed.state == TrialState.FAIL
    record = load(killed, ("failure", "failure_message"))
    assert record.failure == FailureKind.KILLED and "SIGTERM" in str(record.failure_message)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == target, "the target must be exact"
    retries = [t for t in finished if t.system_attrs.get("killed_retry_of") == number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert load(retries[0], ("worker",)).worker != stopped_worker
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == target, "no params may run twice"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.fixture(scope="module")
def slurm() -> None:
    require_slurm()


@pytest.fixture
def database(slurm) -> Iterator[str]:
    url = create_database(server_url())
    try:
        yield url
    finally:
        drop_database(url)


@dataclass
class TimeLimited:
    """The time-limited job, the worker that waits to take its retry, the stopped trial."""

    url: str
    study: str
    folder: Path
    jobs: list[str] = field(default_factory=list)
    trial: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def start(self, data: Path) -> None:
        """Submit the time-limited worker, stop its trial once it trains, submit the other."""
        args = (str(JOB_SCRIPT), self.study, "--data", str(data))
        env = job_env(self.url)
        try:
            self.jobs.append(sbatch("--array=0", "--time=1", *args, env=env, cwd=self.folder))
            trial = running_trial_of(self.url, self.study, f"slurm:{self.jobs[0]}_0", 150)
            for pid in trial_processes(self.jobs[0]):
                os.kill(pid, signal.SIGSTOP)  # waits out its time limit using no core
            self.trial.append(trial.number)
            self.jobs.append(sbatch("--array=0", *args, env=env, cwd=self.folder))
        except BaseException as err:  # noqa: BLE001 - the test reports it
            self.errors.append(err)


@pytest.fixture(scope="module")
def time_limited(slurm, synthetic_root, tmp_path_factory) -> Iterator[TimeLimited]:
    """One worker under `--time=1` whose only trial is stopped mid-training (SIGSTOP), set up
    in a thread while the other tests run; then one more worker, which waits for a slot.
    """
    folder = tmp_path_factory.mktemp("time-limited")
    url = create_database(server_url())
    name = create_study(folder, url, "limited", trials=1, data=synthetic_root, epochs=10)
    limited = TimeLimited(url, name, folder)
    thread = threading.Thread(target=limited.start, args=(synthetic_root,), daemon=True)
    try:
        with cancelled_at_exit(limited.jobs):
            thread.start()
            yield limited
            thread.join()
    finally:
        drop_database(url)


def test_an_array_of_three_finishes_the_exact_target_and_a_cancelled_task_s_trial_is_retried(
    time_limited, database, synthetic_root, tmp_path
):
    name = create_study(tmp_path, database, "array", trials=4, data=synthetic_root)
    job = sbatch("--array=0-2", str(JOB_SCRIPT), name, "--data", str(synthetic_root),
                 env=job_env(database), cwd=tmp_path)
    victim = f"{job}_1"
    with cancelled_at_exit([job]):
        trial = running_trial_of(database, name, f"slurm:{victim}", timeout=120)
        subprocess.run(["scancel", victim], check=True)
        states = wait_until_done(job, timeout=240)
    out = job_outputs(tmp_path)
    assert states == {f"{job}_0": "COMPLETED", victim: "CANCELLED", f"{job}_2": "COMPLETED"}, out
    assert "Traceback" not in out, out
    trials = trials_of(database, name)
    assert_retried_once_with_same_params(trials, trial.number, 4, f"slurm:{victim}")
    workers = {load(t, ("worker",)).worker for t in trials}
    assert f"slurm:{victim}" in workers <= {f"slurm:{job}_{i}" for i in range(3)}, workers


def test_a_task_killed_by_its_time_limit_has_its_trial_retried_with_the_same_params(
    time_limited,
):
    t = time_limited
    deadline = time.monotonic() + 180
    while len(t.jobs) < 2 and not t.errors and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not t.errors, t.errors
    limited, other = t.jobs
    states = wait_until_done(limited, timeout=150)  # a one-minute limit, checked every 30 s
    assert states == {f"{limited}_0": "TIMEOUT"}, job_outputs(t.folder)
    states = wait_until_done(other, timeout=120)  # the waiting worker takes the retry
    assert states == {f"{other}_0": "COMPLETED"}, job_outputs(t.folder)
    trials = trials_of(t.url, t.study)
    assert_retried_once_with_same_params(trials, t.trial[0], 1, f"slurm:{limited}_0")
    ran = {x.number: (x.state.name, load(x, ("worker", "failure"))) for x in trials}
    assert {r.worker for _, r in ran.values() if r.failure != FailureKind.SURPLUS} == {
        f"slurm:{limited}_0", f"slurm:{other}_0"}, ran  # a surplus trial ends before its log

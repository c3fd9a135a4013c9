"""Fault tests with real processes on real storages, through the `sweep` commands a user runs:
two `sweep run` started at the same instant on a new study plus a worker killed with SIGKILL in
the middle of a trial (SQLite and PostgreSQL), and PostgreSQL restarted under running workers.

Trials are tiny (crop 32, one epoch of two batches, a few thousand parameters) and heartbeats
fast (1 s, 3 s grace) so each test takes seconds of training; most of the time is process start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.fixtures.storage import create_database

SWEEP = str(Path(sys.executable).with_name("sweep"))
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY = "faults"


def tiny_spec(folder: Path, data: Path) -> Path:
    spec = {
        "name": STUDY,
        "metric": "iou",
        "direction": "maximize",
        "data": str(data),
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {
            "epochs": 1, "train_fraction": 1.0, "crop": 32, "batches_per_epoch": 2,
            "max_val_patches": 2, "trial_timeout": 120,
        },
        "execution": {"heartbeat_interval": 1, "grace_period": 3, "max_retry": 2},
        "fixed": {
            "model": {"name": "vanilla-unet", "base_width": 4},
            "optim": {"batch_size": 4, "schedule": "constant"},
            "train": {"device": "cpu", "amp": False, "num_workers": 0, "seed": 0},
        },
        "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.03, "log": True}},
    }
    path = folder / f"{STUDY}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def spec_file(tmp_path, synthetic_root) -> Path:
    return tiny_spec(tmp_path, synthetic_root)


@pytest.fixture(autouse=True)
def _scratch_tmpdir(monkeypatch):
    """Workers killed with SIGKILL leave their trial's scratch folder behind: keep those in a
    folder of ours (short: forkserver sockets live there too) and remove it afterwards."""
    scratch = tempfile.mkdtemp(prefix="cs-faults-")
    monkeypatch.setenv("TMPDIR", scratch)
    yield
    shutil.rmtree(scratch, ignore_errors=True)


def sweep(*args: str, cwd: Path) -> subprocess.Popen:
    """A real `sweep` command; one thread each, as several share the CI machine's cores."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [SWEEP, *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"`sweep` did not finish in {timeout}s:\n{out}\n{err}")
    return proc.returncode, out + err


def trials(storage_url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=storage_url).trials


def wait_for(condition, what: str, timeout: float = 120.0, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out waiting for {what}")


def study_exists(url: str) -> bool:
    try:
        return STUDY in optuna.get_all_study_names(url)
    except Exception:  # noqa: BLE001 - the schema may be half-created by the other process
        return False


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def in_trial(worker: int) -> bool:
    """A worker is mid-trial while a training process exists under it (trials run in a child
    forked by the worker's forkserver: worker → forkserver → trial)."""
    return any(children(server) for server in children(worker))


def assert_study_done(url: str, target: int, killed: int | None = 0):
    """Exactly `target` finished trials, none RUNNING or WAITING, numbers unique; FAILED only
    `killed` trials (None: any number) and any `surplus` ones (a trial started in the instant
    the last slot went, ended before training)."""
    all_trials = trials(url)
    states = [t.state for t in all_trials]
    assert sum(s in FINISHED for s in states) == target, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    failed = [t for t in all_trials if t.state == TrialState.FAIL]
    real = [t.user_attrs.get("failure") for t in failed if t.user_attrs.get("failure") != "surplus"]
    assert killed is None or len(real) == killed, real
    numbers = [t.number for t in all_trials]
    assert sorted(numbers) == list(range(len(numbers)))
    return all_trials


def test_racing_runs_and_a_killed_worker_end_with_exactly_the_target(
    storage_url, spec_file, tmp_path
):
    """Three workers on one new study: two `sweep run` started at the same instant (they must
    make one study with unique trial numbers) and a `sweep worker`, killed with SIGKILL in the
    middle of a trial (its params must run again; no trial may stay RUNNING)."""
    target = 6
    run = ("run", "--study", str(spec_file), "--trials", str(target), "--storage", storage_url,
           "--no-progress")
    runs = [sweep(*run, cwd=tmp_path) for _ in range(2)]
    wait_for(lambda: study_exists(storage_url), "the study to be created")
    victim = sweep("worker", "--study", STUDY, "--storage", storage_url, cwd=tmp_path)

    def victim_in_trial() -> bool:
        if victim.poll() is not None:
            pytest.fail(f"the worker exited before it was killed: {finish(victim)}")
        return in_trial(victim.pid)

    wait_for(victim_in_trial, "the worker to start a trial", poll=0.05)
    running = {t.number for t in trials(storage_url) if t.state == TrialState.RUNNING}
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    for proc in runs:
        code, output = finish(proc)
        assert code == 0, output
    assert optuna.get_all_study_names(storage_url) == [STUDY]
    done = assert_study_done(storage_url, target, killed=1)
    (killed,) = [t for t in done if t.state == TrialState.FAIL and t.number in running]
    (retry,) = [t for t in done if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state in FINISHED and retry.params == killed.params


@pytest.mark.postgres
def test_postgres_restart_under_running_workers_loses_nothing(
    postgres_server, spec_file, tmp_path
):
    target = 6
    url = create_database(postgres_server.url)
    run = sweep("run", "--study", str(spec_file), "--trials", str(target), "--storage", url,
                "--no-progress", cwd=tmp_path)
    wait_for(lambda: study_exists(url), "the study to be created")
    worker = sweep("worker", "--study", STUDY, "--storage", url, cwd=tmp_path)
    wait_for(lambda: any(t.state in FINISHED for t in trials(url)), "a first finished trial")
    before = {t.number: t.value for t in trials(url) if t.state in FINISHED}
    postgres_server.restart(down_seconds=2)

    for proc in (run, worker):
        code, output = finish(proc)
        if code != 0:  # a worker may give up, with one clear line and no traceback
            assert "Traceback" not in output, output
            assert output.strip().splitlines()[-1].startswith("error: "), output
    if len([t for t in trials(url) if t.state in FINISHED]) < target:
        code, output = finish(sweep("worker", "--study", STUDY, "--storage", url, cwd=tmp_path))
        assert code == 0, output
    done = assert_study_done(url, target, killed=None)
    after = {t.number: t.value for t in done}
    assert {n: after[n] for n in before} == before  # finished trials kept
    ran = [t.params for t in done if t.state in FINISHED]
    for failed in (t for t in done if t.state == TrialState.FAIL):  # interrupted ones ran again
        assert not failed.params or failed.params in ran, failed.number


def test_a_killed_one_of_several_local_workers_still_ends_with_the_summary(
    spec_file, tmp_path
):
    """`sweep run --workers 2` with one worker killed (SIGKILL) mid-trial: the other finishes
    the study (the dead worker's trial is retried), and the run ends 0 with its summary and a
    note naming the lost worker, not with exit code 2 and no summary."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    run = sweep("run", "--study", str(spec_file), "--trials", "4", "--storage", url,
                "--workers", "2", "--no-progress", cwd=tmp_path)

    def a_worker_in_trial() -> int | None:
        if run.poll() is not None:
            pytest.fail(f"`sweep run` ended before a worker was killed: {finish(run)}")
        return next((w for w in children(run.pid) if in_trial(w)), None)

    victim = wait_for(a_worker_in_trial, "a worker to start a trial", poll=0.05)
    os.kill(victim, signal.SIGKILL)
    code, output = finish(run)
    assert code == 0, output
    assert f"{STUDY}: 4/4 finished" in output
    assert "note: 1 local worker process(es) ended early (exit codes [-9]); the others " \
           "finished the study" in output
    assert "Traceback" not in output
    assert_study_done(url, 4, killed=None)


def test_a_run_with_nothing_to_do_starts_no_forkserver(spec_file, synthetic_root, tmp_path,
                                                       monkeypatch):
    """The forkserver holds torch (~450 MB): a rerun of a finished study must not start one."""
    import sweep.execution.trial_process
    from sweep.execution.runner import run_study
    from sweep.study.spec import load_spec

    url = f"sqlite:///{tmp_path / 'done.db'}"
    spec = load_spec(spec_file)
    study = optuna.create_study(study_name=STUDY, storage=url, direction="maximize")
    dist = optuna.distributions.FloatDistribution(0.001, 0.03, log=True)
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": 0.01}, distributions={"optim.lr": dist}, value=value))

    def no_forkserver():
        raise AssertionError("a forkserver was started for a run with nothing to do")

    monkeypatch.setattr(sweep.execution.trial_process, "warm_up", no_forkserver)
    summary = run_study(spec, 2, storage=url, data=synthetic_root, progress=False)
    assert (summary.complete, summary.target) == (2, 2)

"""Every shipped study runs as a user types it: `sweep run --study NAME` for each spec in
studies/, at CPU scale through `--set` overrides (tiny crop, two short epochs), on the
DataLoader path with a loader worker (the path every CPU run and every GPU run whose subset does
not go onto the device takes), once with two workers sharing the machine as
`execution.trials_per_gpu` workers share a GPU. And a run whose every trial fails stops itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.study.spec import STUDIES_DIRS
from tests.sweep_helpers import tiny_spec_dict, write_spec

SHIPPED = sorted(p.stem for p in STUDIES_DIRS[1].glob("*.yaml"))
CPU_SCALE = (
    "budget.epochs=2", "budget.crop=64", "budget.batches_per_epoch=1",
    "budget.max_val_patches=2", "confirm=null", "stop_search=null", "execution.trial_threads=1",
    "fixed.train.num_workers=1", "fixed.data.on_device=never",
)


def sweep(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The real command line, in `tmp_path` (its sweeps.db and artifacts/)."""
    env = {k: v for k, v in os.environ.items() if k != "CLOUDSWEEP_TRIAL_THREADS"}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_args(study: str, trials: int, data: Path, overrides: tuple[str, ...]) -> list[str]:
    sets = [a for o in overrides for a in ("--set", o)]
    return ["run", "--study", study, "--trials", str(trials), "--data", str(data),
            "--no-progress", *sets]


def trials_of(tmp_path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweeps.db'}"
                             ).get_trials(deepcopy=False)


def test_every_spec_in_the_package_is_covered():
    assert {"demo", "loss-search", "model-search"} <= set(SHIPPED)


# loss-search runs with two workers sharing the machine's two cores, as trials_per_gpu workers
# share a GPU; each owns one core, so its trials still get their loader worker.
WORKERS = {"loss-search": 2}


@pytest.mark.parametrize("study", SHIPPED)
def test_shipped_study_finishes_its_trials_on_the_loader_path(study, synthetic_root, tmp_path):
    workers = WORKERS.get(study, 1)
    done = sweep(tmp_path, *run_args(study, workers, synthetic_root, CPU_SCALE),
                 "--workers", str(workers))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DataLoader will create" not in done.stderr  # no warning per loader
    trials = trials_of(tmp_path, study)
    failures = [t.user_attrs.get("failure") for t in trials if t.user_attrs.get("failure")]
    assert failures == [], [t.user_attrs.get("failure_message") for t in trials]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == workers and any(t.state == TrialState.COMPLETE for t in finished)
    for t in finished:  # trained through a DataLoader with a worker process, not on a device
        assert t.user_attrs["config"]["train"]["num_workers"] == 1
        assert t.user_attrs["config"]["train"]["threads"] == 1
        assert t.user_attrs["data"]["data_on_device"] is False


@pytest.fixture()
def broken_spec(tmp_path):
    """A spec every trial of which fails inside training (this machine has no CUDA device)."""
    spec = tiny_spec_dict("broken", space={
        "optim.lr": {"type": "float", "low": 0.003, "high": 0.03, "log": True}})
    spec["fixed"]["train"]["device"] = "cuda"
    spec["execution"]["max_consecutive_failures"] = 3
    return write_spec(tmp_path, spec)


def test_a_run_whose_trials_all_fail_stops_after_n_with_one_line(broken_spec, synthetic_root,
                                                                tmp_path):
    done = sweep(tmp_path, *run_args(str(broken_spec), 50, synthetic_root, ()))
    assert done.returncode == 3, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    line = lines[0]
    assert "3 consecutive failed trials (bug)" in line and "trial 0" in line
    assert "'cuda' requested but no CUDA device" in line
    kept = Path(re.search(r"its traceback: (\S+?)\. Fix", line).group(1))
    assert "Traceback (most recent call last)" in kept.read_text()
    trials = trials_of(tmp_path, "broken")
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)

    status = sweep(tmp_path, "status", "--study", "broken")
    assert status.returncode == 0
    assert "halted" in status.stdout and "failures by kind" in status.stdout
    assert "no CUDA device" in status.stdout  # the latest message of the kind
    # A plain worker does not restart a halted study (sweep.execution.halt; tests/test_halt.py)
    worker = sweep(tmp_path, "worker", "--study", "broken")
    assert worker.returncode == 3 and "consecutive failed trials" in worker.stderr
    assert len(trials_of(tmp_path, "broken")) == 3
    resumed = sweep(tmp_path, "worker", "--study", "broken", "--resume")
    assert resumed.returncode == 3 and len(trials_of(tmp_path, "broken")) == 6


def test_halted_study_stops_every_worker(broken_spec, synthetic_root, tmp_path):
    done = sweep(tmp_path, *run_args(str(broken_spec), 50, synthetic_root, ()), "--workers", "2")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "consecutive failed trials" in done.stderr
    # each worker may have had one trial in flight when the other wrote the mark
    assert 3 <= len(trials_of(tmp_path, "broken")) <= 5

"""`sweep worker --study NAME|PATH`: every machine runs the same command. Workers started together
on an empty storage make one study from the spec and finish exactly its target; a worker whose
study is done exits 0; a rejected input (a data tree the scene split refuses) leaves no study
behind, and a study row without a spec is one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cloudseg.data import write_synthetic
from sweep.cli import app
from sweep.storage import open_storage
from tests.sweep_helpers import tiny_spec_dict, trial_threads, write_spec


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_trial():
    with trial_threads(1):
        yield


def quick_spec(folder: Path, name: str) -> Path:
    """One epoch of two batches, no pruning and no always-failing choice."""
    return write_spec(folder, tiny_spec_dict(
        name=name,
        pruner={"name": "none"},
        budget={"epochs": 1, "train_fraction": 0.75, "crop": 64, "batches_per_epoch": 2,
                "max_val_patches": 2, "trial_timeout": 120},
        space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
               "loss.name": {"type": "categorical", "choices": ["bce", "dice"]}},
    ))


def sweep_worker(*args: str, cwd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sweep.cli", "worker", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_workers_started_together_create_one_study_and_finish_its_target(
    storage_url, synthetic_root, tmp_path
):
    spec = quick_spec(tmp_path, "together")
    args = ("--study", str(spec), "--trials", "3", "--storage", storage_url,
            "--data", str(synthetic_root))
    procs = [sweep_worker(*args, cwd=tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outputs)
    assert not any("Traceback" in out for out in outputs)
    lines = "\n".join(outputs).splitlines()  # stdout is a pipe here: one line per start and end
    assert sum(" complete, value " in ln for ln in lines) == 3
    assert sum(" started on " in ln for ln in lines) == 3

    storage = open_storage(storage_url)
    assert optuna.get_all_study_names(storage) == ["together"]
    study = optuna.load_study(study_name="together", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 3
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert study.user_attrs["target"] == 3 and study.user_attrs["spec"]["name"] == "together"

    late = sweep_worker("--study", "together", "--storage", storage_url, cwd=tmp_path)
    out = late.communicate(timeout=120)[0]
    assert late.returncode == 0, out
    assert "3/3 finished" in out
    assert len(optuna.load_study(study_name="together", storage=storage).trials) == len(
        study.trials), "a worker of a finished study must start no trial"


@pytest.fixture(scope="module")
def one_scene_root(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("one") / "tree", train_scenes=1,
                           test_scenes=0, scene_size=(400, 400), seed=0)


@pytest.mark.parametrize("command", ["worker", "run"])
def test_a_tree_the_scene_split_rejects_leaves_no_study(command, one_scene_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = quick_spec(tmp_path, "onescene")
    result = CliRunner().invoke(app, [
        command, "--study", str(spec), "--trials", "2", "--storage", url,
        "--data", str(one_scene_root), *(["--no-progress"] if command == "run" else []),
    ])
    assert result.exit_code == 2, result.output
    assert "at least 2 scenes" in result.output and "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "at least 2 scenes" in errors[0]
    if (tmp_path / "sweeps.db").exists():
        assert optuna.get_all_study_names(open_storage(url)) == []


def test_a_study_without_its_spec_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    import sweep.execution.workers

    monkeypatch.setattr(sweep.execution.workers, "SPEC_WAIT_S", 0.0)
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    optuna.create_study(study_name="half-made", storage=open_storage(url))  # creator died here
    result = CliRunner().invoke(app, ["worker", "--study", "half-made", "--storage", url])
    assert result.exit_code == 2, result.output
    assert "has no spec" in result.output and "--trials" in result.output
    assert "Traceback" not in result.output and "KeyError" not in result.output


def test_a_missing_study_needs_a_target_or_a_spec(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    spec = quick_spec(tmp_path, "notarget")
    result = CliRunner().invoke(app, ["worker", "--study", str(spec), "--storage", url])
    assert result.exit_code == 2 and "give --trials N" in result.output, result.output
    assert not (tmp_path / "sweeps.db").exists(), "nothing may be written before the checks"

    optuna.create_study(study_name="other", storage=open_storage(url))
    result = CliRunner().invoke(app, ["worker", "--study", "nosuch", "--storage", url])
    assert result.exit_code == 2, result.output
    assert "no study 'nosuch'" in result.output and "other" in result.output
    assert "demo" in result.output  # the specs it could have been created from

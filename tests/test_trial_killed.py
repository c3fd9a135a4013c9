"""A trial process killed by a signal (as the out-of-memory killer does) is its own failure class,
"killed" with the signal, and runs once more with the same params before it counts as failed."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import optuna
import pytest
from optuna.trial import TrialState

from sweep.execution.target import run_to_target
from sweep.execution.trial_process import TrialFailure, run_isolated
from tests.sweep_helpers import tiny_spec_dict, trial_threads


def test_a_trial_process_killed_by_a_signal_fails_as_killed_naming_it(synthetic_root, tmp_path):
    from sweep.execution.objective import trial_config
    from sweep.study.spec import StudySpec

    spec = StudySpec.from_stored(tiny_spec_dict(name="kill", space={}), "kill.yaml")
    config = trial_config(spec, {}, synthetic_root, 0)

    def kill_the_child(epoch, record):  # the trial is alive and training: SIGKILL it
        (child,) = [p for p in mp.active_children() if p.name != "SyncManager"]
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        return False

    with trial_threads(1), pytest.raises(TrialFailure) as failure:
        run_isolated(config, tmp_path, kill_the_child, artifacts=False)
    assert failure.value.kind == "killed"
    assert failure.value.message == ("trial process killed by SIGKILL (9) (what the kernel's "
                                     "out-of-memory killer sends)")


def _study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'k.db'}")
    return optuna.create_study(study_name="k", storage=storage, direction="maximize",
                               sampler=optuna.samplers.RandomSampler(seed=0))


def _objective(kill_numbers: set[int]):
    """Fails as the Objective does for a killed child on the listed trial numbers."""

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number in kill_numbers:
            trial.set_user_attr("failure", "killed")
            trial.set_user_attr("failure_message", "trial process killed by SIGKILL (9)")
            raise TrialFailure("killed", "trial process killed by SIGKILL (9)")
        return x

    return objective


def _run(study, objective, target: int) -> list[optuna.trial.FrozenTrial]:
    run_to_target(study, objective, target, poll_s=0.01, shown_storage="k.db",
                  catch=(TrialFailure,), log=lambda _line: None)
    return study.get_trials()


def test_a_killed_trial_is_retried_once_with_the_same_params(tmp_path):
    trials = _run(_study(tmp_path), _objective({0}), target=1)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    first, retry = trials
    assert first.user_attrs["failure"] == "killed"
    assert retry.params == first.params
    assert retry.system_attrs["failed_trial"] == 0  # so it trains on the same subset
    assert "failure" not in retry.user_attrs


def test_a_retry_killed_again_counts_as_failed_and_is_not_retried_again(tmp_path):
    trials = _run(_study(tmp_path), _objective({0, 1}), target=1)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params
    assert trials[2].params != trials[0].params  # newly sampled, not a third try
    assert trials[2].system_attrs.get("killed_retry_of") is None


def test_other_failures_are_not_retried(tmp_path):
    study = _study(tmp_path)

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 0:
            trial.set_user_attr("failure", "bug")
            raise TrialFailure("bug", "shape mismatch")
        return x

    trials = _run(study, objective, target=1)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params != trials[0].params

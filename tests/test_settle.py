"""Stopping the search once the answer is settled (sweep.execution.settle): the noise is the
confirmation runs' pooled sd, the rule fires only when none of the last `patience` search trials
came within it of the leader, and a study driven by run_to_target then stops proposing configs,
races its top ones and ends well before its target."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.execution.confirm import confirms
from sweep.execution.settle import check_settled, noise_sd, stored_stop
from sweep.execution.target import run_to_target
from sweep.study.spec import Confirm, StopSearch

DIST = {"x": FloatDistribution(0, 1)}


@pytest.fixture()
def study(tmp_path):
    return optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}",
                               direction="maximize")


def add(study, value, x=None, **attrs):
    study.add_trial(create_trial(params={"x": value if x is None else x}, distributions=DIST,
                                 value=value, user_attrs=attrs))


def test_noise_is_the_pooled_sd_of_the_confirmation_runs(study):
    add(study, 0.8)
    add(study, 0.7)
    assert noise_sd(study) is None
    for v in (0.70, 0.72):
        add(study, v, x=0.8, confirms=0)
    for v in (0.60, 0.66):
        add(study, v, x=0.7, confirms=1)
    pooled = (0.02**2 / 2 + 0.06**2 / 2) / 2  # a pair (a, b) has variance (a - b)² / 2
    assert noise_sd(study) == pytest.approx(pooled**0.5)


def test_the_rule_fires_only_when_no_recent_trial_came_within_the_noise(study):
    rule = StopSearch(patience=3, min_trials=2)
    add(study, 0.90)
    add(study, 0.50)
    for v in (0.88, 0.92):
        add(study, v, x=0.9, confirms=0)  # noise sd ~0.028
    add(study, 0.89)  # within the noise of the leader: not settled
    add(study, 0.40)
    add(study, 0.45)
    assert check_settled(study, rule) is None
    add(study, 0.30)  # the last three are all far below the leader
    stop = check_settled(study, rule)
    assert stop is not None and stop.leader == 0 and stop.patience == 3
    assert stored_stop(study) == stop and "search stopped after 6 complete trials" in stop.line()
    assert check_settled(study, None) is None


def test_a_settled_search_stops_races_and_ends_before_its_target(study):
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        noise = 0.01 * (trial.number % 3 - 1) if confirms(trial) is not None else 0.0
        return x + noise

    study.sampler = optuna.samplers.RandomSampler(seed=0)
    run_to_target(study, objective, 200, poll_s=0.05, shown_storage="test",
                  confirm=Confirm(top=2, repeats=2, max_runs=4),
                  stop_rule=StopSearch(patience=4, min_trials=4), log=lambda line: None)
    stop = stored_stop(study)
    assert stop is not None
    trials = study.get_trials(deepcopy=False)
    search = [t for t in trials if confirms(t) is None and t.state == TrialState.COMPLETE]
    assert len(search) < 60  # far short of the target of 200
    confirmations = [t for t in trials if confirms(t) is not None
                     and t.state == TrialState.COMPLETE]
    top_two = sorted(search, key=lambda t: -t.value)[:2]
    raced = {confirms(t) for t in confirmations}  # the top two, and the probe's early leader
    assert {t.number for t in top_two} <= raced and len(raced) <= 3
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))

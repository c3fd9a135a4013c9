"""Confirmation runs (sweep.execution.confirm): the top configs are queued once each per repeat
even when several processes race to queue them, a killed confirmation is retried as the same
confirmation, confirmations are never pruned and never counted toward the target."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sweep.execution.confirm import confirms, enqueue_confirmations, top_trials
from sweep.execution.racing import RaceSettings
from sweep.execution.target import retry_killed, run_to_target
from sweep.storage import open_storage
from sweep.study.spec import Confirm

# A worker process with a cheap objective (no training): the protocol is what is tested.
WORKER = textwrap.dedent("""
    import sys, time, optuna
    from sweep.execution.target import run_to_target
    from sweep.storage import open_storage
    from sweep.study.spec import Confirm
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="race", storage=open_storage(sys.argv[1]),
                              sampler=optuna.samplers.RandomSampler(seed=int(sys.argv[2])))
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(0.05)
        return x
    run_to_target(study, objective, 6, poll_s=0.1, shown_storage="test",
                  confirm=Confirm(top=2, repeats=3, max_runs=3), log=lambda line: None)
""")


def _holders(study):
    """(origin, repeat) of every confirmation that finished or still holds its slot."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((confirms(t), t.user_attrs["confirm_repeat"]) for t in done
                  if confirms(t) is not None)


@pytest.mark.parametrize("storage_url", ["sqlite", pytest.param("postgres",
                         marks=pytest.mark.postgres)], indirect=True)
def test_confirmations_run_exactly_once_per_config_with_racing_workers(storage_url):
    study = optuna.create_study(study_name="race", storage=open_storage(storage_url),
                                direction="maximize")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage_url, str(i)])
             for i in range(3)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0, 0]

    trials = study.get_trials(deepcopy=False)
    search = [t for t in trials if confirms(t) is None]
    assert sum(t.state == TrialState.COMPLETE for t in search) == 6  # the target, exactly
    top = sorted((t for t in search if t.state == TrialState.COMPLETE),
                 key=lambda t: -t.value)[:2]
    assert _holders(study) == sorted((t.number, r) for t in top for r in (1, 2, 3))
    for t in trials:
        if confirms(t) is not None and t.state == TrialState.COMPLETE:
            assert t.params == study.trials[confirms(t)].params
    losers = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("failure") in ("duplicate", "surplus") for t in losers)
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))


def test_queueing_is_idempotent_and_picks_distinct_params(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for x, value in ((0.1, 0.9), (0.1, 0.85), (0.2, 0.5), (0.3, 0.7)):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist,
                                                  value=value))
    study.add_trial(optuna.trial.create_trial(  # failed into a worst value: never a candidate
        params={"x": 0.4}, distributions=dist, value=0.95, user_attrs={"failure": "oom"}))
    assert [t.number for t in top_trials(study, 2)] == [0, 3]  # trial 1 repeats trial 0's params
    assert enqueue_confirmations(study, RaceSettings(2, 2, 4)) == 4  # the first round
    assert enqueue_confirmations(study, RaceSettings(2, 2, 4)) == 0
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted((confirms(t), t.user_attrs["confirm_repeat"]) for t in waiting) == [
        (0, 1), (0, 2), (3, 1), (3, 2)]


def test_a_killed_confirmation_is_retried_as_the_same_confirmation(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.3}, distributions=dist, value=0.3))
    enqueue_confirmations(study, RaceSettings(1, 1, 2))

    def killed(trial):
        trial.suggest_float("x", 0, 1)  # the enqueued params, as a real objective suggests
        trial.set_user_attr("failure", "killed")
        raise RuntimeError("SIGKILL")

    study.optimize(killed, n_trials=1, catch=(RuntimeError,), callbacks=[retry_killed])
    victim = study.trials[1]
    assert victim.state == TrialState.FAIL and confirms(victim) == 0
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and confirms(retry[0]) == 0
    assert retry[0].user_attrs["confirm_repeat"] == 1
    assert enqueue_confirmations(study, RaceSettings(1, 1, 2)) == 0  # the retry is that one

    run_to_target(study, lambda t: t.suggest_float("x", 0, 1), 1, poll_s=0.05,
                  shown_storage="test", confirm=Confirm(top=1, repeats=1, max_runs=2),
                  log=lambda line: None)
    assert _holders(study) == [(0, 1)]
    assert study.trials[-1].params == {"x": 0.3}


def test_confirmations_are_not_pruned_and_not_counted(tmp_path, synthetic_root):
    """A pruner that prunes every search trial at its first report leaves the confirmation of
    the (complete) origin alone: it trains its whole budget."""
    from sweep.execution.runner import create_study, prepare
    from sweep.execution.workers import work
    from sweep.study.spec import parse_spec
    from tests.sweep_helpers import tiny_spec_dict, trial_threads

    spec = parse_spec(tiny_spec_dict(
        name="confirmed", pruner={"name": "threshold", "lower": 1.5},
        space={"optim.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True}},
        confirm={"top": 1, "repeats": 1}, threshold="official",
    ), "confirmed.yaml")
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    root = prepare(spec, 1, url, synthetic_root)
    study = create_study(spec, 1, url, root)
    study.add_trial(optuna.trial.create_trial(  # the search trial: complete
        params={"optim.lr": 0.005},
        distributions={"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.01,
                                                                          log=True)},
        value=-1.0))  # below any IoU: the confirmation's run (it has weights) is the best run
    with trial_threads(1):
        work("confirmed", url, data=root)
    confirmation = study.trials[-1]
    assert confirmation.state == TrialState.COMPLETE and confirms(confirmation) == 0
    assert sorted(confirmation.intermediate_values) == [1, 2]  # pruned at 1 if it were search
    assert confirmation.params == {"optim.lr": 0.005}
    seed = confirmation.user_attrs["subset_seed"]
    assert seed != 0  # a fresh training subset, and a fresh initialisation, crops and flips
    assert confirmation.user_attrs["config"]["train"]["seed"] == seed
    from sweep.execution.runner import summarise

    summary = summarise("confirmed", url)
    assert (summary.complete, summary.confirmations) == (1, 1)

    # scored at 12/255 (threshold: official), and the bundle carries that threshold
    metrics = confirmation.user_attrs["metrics"]
    assert confirmation.value == metrics["iou_official"]
    assert set(metrics["scene_ious"]) == {"fixed", "official", "tuned"}
    from sweep.api import export_best

    dest = export_best("confirmed", tmp_path / "bundle", storage=url)
    record = json.loads((dest / "metrics.json").read_text())
    assert record["trial"] == confirmation.number
    assert record["confirmation"]["runs"] == [confirmation.number]  # the search run left out
    assert record["confirmation"]["values"] == [confirmation.value]
    assert record["confirmation"]["search_value"] == -1.0
    assert record["threshold"]["rule"] == "official"
    assert record["threshold"]["value"] == 12 / 255
    assert yaml.safe_load((dest / "config.yaml").read_text())["train"]["threshold"] == 12 / 255
    card = (dest / "README.md").read_text()
    assert "It then ran 1 time, each with a fresh training subset" in card
    assert "## Threshold" in card

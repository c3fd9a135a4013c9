"""Sampling never repeats itself by accident: every sampler is seeded per trial from (spec seed,
trial number), so a resumed study and a second process continue the study instead of replaying
its seeded start-up draws, while an uninterrupted run stays reproducible from the seed.

The unit tests drive the spec's own samplers with a trivial objective (no training); the last
tests start real `sweep run` processes on one study, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from sweep.study.samplers import SAMPLERS
from sweep.study.seeding import TrialSeeded, trial_seed
from sweep.study.spec import parse_spec
from tests.sweep_helpers import tiny_spec_dict, write_spec

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {
    "loss.name": {"type": "categorical", "choices": ["bce", "dice", "focal"]},
    "optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True,
                 "grid": [0.001, 0.003, 0.01, 0.03]},
}


def spec_for(sampler: str, seed: int = 3, **settings):
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="the cmaes sampler needs the `cmaes` package")
    return parse_spec(tiny_spec_dict(sampler={"name": sampler, "seed": seed, **settings},
                                     space=SPACE), f"{sampler}.yaml")


def objective(trial: optuna.Trial) -> float:
    loss = trial.suggest_categorical("loss.name", ["bce", "dice", "focal"])
    lr = trial.suggest_float("optim.lr", 0.001, 0.1, log=True)
    return lr * (1.0 if loss == "dice" else 0.5)


def params_of(study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)]


def run(url: str, spec, n: int, name: str = "s"):
    """`n` more trials with a freshly built sampler: what a new `sweep run` process does."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize",
                                sampler=spec.build_sampler(), load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GridSampler's "re-evaluating" warning is asserted on
        study.optimize(objective, n_trials=n)
    return study


def test_every_sampler_is_wrapped_and_seeded_per_trial():
    for name in set(SAMPLERS.names()) - {"cmaes"}:
        sampler = spec_for(name).build_sampler()
        assert isinstance(sampler, TrialSeeded) and sampler.seed == 3
        assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert trial_seed(0, 1) != trial_seed(0, 2) != trial_seed(1, 2)
    assert trial_seed(0, 1) == trial_seed(0, 1) and 0 <= trial_seed(5, 7) < 2**32


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_a_resume_continues_instead_of_replaying(name, tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    spec = spec_for(name)
    run(url, spec, 3)
    study = run(url, spec, 3)  # `sweep run --trials 3`, then `--trials 6`
    assert len(set(params_of(study))) == 6, params_of(study)


@pytest.mark.parametrize("name", ["random", "tpe", "grid", "gp", "cmaes"])
def test_an_uninterrupted_run_is_reproducible_and_a_resume_draws_the_same(name, tmp_path):
    spec = spec_for(name)
    a = run(f"sqlite:///{tmp_path / 'a.sqlite'}", spec, 6)
    b = run(f"sqlite:///{tmp_path / 'b.sqlite'}", spec, 6)
    assert params_of(a) == params_of(b)
    resumed_url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    run(resumed_url, spec, 2)
    run(resumed_url, spec, 2)
    resumed = run(resumed_url, spec, 2)
    if name in ("random", "tpe", "grid"):  # nothing but the storage and the seed decides
        assert params_of(resumed) == params_of(a)
    other = run(f"sqlite:///{tmp_path / 'd.sqlite'}", spec_for(name, seed=4), 6)
    assert params_of(other) != params_of(a)  # the seed matters


def interleaved(url: str, spec, rounds: int) -> list[tuple]:
    """Three samplers built alike (three processes of one study) ask in turn before any tells."""
    studies = [optuna.create_study(study_name="p", storage=url, direction="maximize",
                                   sampler=spec.build_sampler(), load_if_exists=True)
               for _ in range(3)]
    for s in studies:  # the grid stops the optimize loop when done; ask/tell has none
        s.stop = lambda: None
    for _ in range(rounds):
        asked = [(s, s.ask()) for s in studies]
        for s, trial in asked:
            s.tell(trial, objective(trial))
    return params_of(studies[0])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_interleaved_processes_never_draw_the_same_point(name, tmp_path):
    if name == "gp":  # past its 10 random start-up trials, GPSampler needs scipy
        pytest.importorskip("scipy", reason="GPSampler's model needs scipy")
    seen = interleaved(f"sqlite:///{tmp_path / 'db.sqlite'}", spec_for(name), rounds=4)
    assert len(seen) == 12 and len(set(seen)) == 12, seen


def test_grid_visits_every_point_once_across_processes(tmp_path):
    # 3 losses x 4 learning rates = 12 points, 12 trials from three processes
    seen = interleaved(f"sqlite:///{tmp_path / 'db.sqlite'}", spec_for("grid"), rounds=4)
    grid = {(("loss.name", loss), ("optim.lr", lr)) for loss in ("bce", "dice", "focal")
            for lr in (0.001, 0.003, 0.01, 0.03)}
    assert set(seen) == grid and len(seen) == 12


# ---- real processes -------------------------------------------------------------------------
PARALLEL_SPEC = {
    "pruner": {"name": "none"},
    "budget": {"epochs": 1, "train_fraction": 0.5, "crop": 32, "batches_per_epoch": 1,
               "max_val_patches": 4, "trial_timeout": 120},
    "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.03, "log": True},
              "loss.name": {"type": "categorical", "choices": ["bce", "dice"]}},
    "fixed": {
        "model": {"name": "vanilla-unet", "base_width": 4},
        "optim": {"batch_size": 2, "schedule": "constant"},
        "train": {"device": "cpu", "amp": False, "channels_last": False, "seed": 0},
    },
}


def sweep_run(spec_path, url: str, data, trials: int, cwd) -> subprocess.Popen:
    """A real `sweep run` process (the console script's code path)."""
    cmd = [sys.executable, "-m", "sweep.cli", "run", "--study", str(spec_path), "--trials",
           str(trials), "--storage", url, "--data", str(data), "--no-progress"]
    env = {**os.environ, "CLOUDSWEEP_TRIAL_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(900)
def test_three_then_six_trials_and_three_processes_at_once_never_repeat(
        storage_url, synthetic_root, tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec_dict(
        name="nodup", sampler={"name": "tpe", "seed": 0, "n_startup_trials": 10},
        **PARALLEL_SPEC))

    def finish(procs):
        for p in procs:
            out, _ = p.communicate(timeout=600)
            assert p.returncode == 0, out

    finish([sweep_run(spec_path, storage_url, synthetic_root, 3, tmp_path)])
    finish([sweep_run(spec_path, storage_url, synthetic_root, 6, tmp_path)])
    study = optuna.load_study(study_name="nodup", storage=storage_url)
    six = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(six) == 6 and len({tuple(sorted(t.params.items())) for t in six}) == 6

    # Three processes started at once on the same study, target 9: one trial or more each.
    finish([sweep_run(spec_path, storage_url, synthetic_root, 9, tmp_path) for _ in range(3)])
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 9
    drawn = [tuple(sorted(t.params.items())) for t in study.get_trials()
             if "failed_trial" not in t.system_attrs]  # a retry repeats its trial on purpose
    assert len(set(drawn)) == len(drawn), drawn

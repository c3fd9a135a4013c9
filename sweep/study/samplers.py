"""SAMPLERS: each sampler a spec can name, with its settings written out and its factory.

Every sampler is wrapped in `TrialSeeded` (sweep.study.seeding): seeded per trial from
(settings.seed, trial number), so workers and resumed runs never replay each other's draws.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from cloudseg import Registry
from sweep.study.strategies import Settings, Strategy, settings_union

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from sweep.study.seeding import TrialSeeded

SAMPLERS: Registry[Strategy] = Registry("sampler")


class TPESettings(Settings):
    """TPE, multivariate and grouped with a constant liar: conditional spaces, parallel workers."""

    name: Literal["tpe"] = "tpe"
    seed: int = 0
    multivariate: bool = True  # joint model of the parameters (conditional losses need it)
    group: bool = True  # split the conditional space into groups (loss-specific params)
    constant_liar: bool = True  # parallel workers avoid proposing the same point
    n_startup_trials: int = Field(10, ge=0)
    n_ei_candidates: int = Field(24, ge=1)


class RandomSettings(Settings):
    """Random search."""

    name: Literal["random"] = "random"
    seed: int = 0


class GridSettings(Settings):
    """The grid of every parameter's `grid` values (or categorical choices)."""

    name: Literal["grid"] = "grid"
    seed: int = 0


class GPSettings(Settings):
    """Gaussian-process sampler (Optuna's GPSampler)."""

    name: Literal["gp"] = "gp"
    seed: int = 0
    n_startup_trials: int = Field(10, ge=0)
    deterministic_objective: bool = False


class CmaEsSettings(Settings):
    """CMA-ES over the continuous parameters (the rest drawn independently)."""

    name: Literal["cmaes"] = "cmaes"
    seed: int = 0
    n_startup_trials: int = Field(1, ge=0)
    sigma0: float | None = Field(None, gt=0)
    restart_strategy: Literal["ipop", "bipop"] | None = None
    consider_pruned_trials: bool = False


def _tpe(s: TPESettings, **_: Any) -> BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(
        seed=s.seed,
        multivariate=s.multivariate,
        group=s.group and s.multivariate,  # optuna requires multivariate for group
        constant_liar=s.constant_liar,
        n_startup_trials=s.n_startup_trials,
        n_ei_candidates=s.n_ei_candidates,
    )


def _random(s: RandomSettings, **_: Any) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=s.seed)


def _grid(s: GridSettings, *, grid: dict[str, list[Any]] | None = None, **_: Any) -> BaseSampler:
    import optuna

    return optuna.samplers.GridSampler(grid or {}, seed=s.seed)


def _gp(s: GPSettings, **_: Any) -> BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(
        seed=s.seed,
        n_startup_trials=s.n_startup_trials,
        deterministic_objective=s.deterministic_objective,
        warn_independent_sampling=False,
    )


def _cmaes(s: CmaEsSettings, **_: Any) -> BaseSampler:
    import optuna

    return optuna.samplers.CmaEsSampler(
        seed=s.seed,
        n_startup_trials=s.n_startup_trials,
        sigma0=s.sigma0,
        restart_strategy=s.restart_strategy,
        consider_pruned_trials=s.consider_pruned_trials,
        warn_independent_sampling=False,
    )


SAMPLERS.add("tpe", Strategy(TPESettings, _tpe))
SAMPLERS.add("random", Strategy(RandomSettings, _random))
SAMPLERS.add("grid", Strategy(GridSettings, _grid))
SAMPLERS.add("gp", Strategy(GPSettings, _gp))
SAMPLERS.add("cmaes", Strategy(CmaEsSettings, _cmaes))

SamplerSection = settings_union(SAMPLERS)  # a spec's `sampler:` section


def build_sampler(settings: Settings, **context: Any) -> TrialSeeded:
    """The sampler `settings` names, wrapped in TrialSeeded: seeded per trial from its seed."""
    import optuna

    with warnings.catch_warnings():  # group, GP, ... are "experimental": we chose them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        inner = SAMPLERS.get(settings.name).build(settings, **context)
    from sweep.study.seeding import TrialSeeded  # optuna: imported when a study runs

    return TrialSeeded(inner, getattr(settings, "seed", 0))

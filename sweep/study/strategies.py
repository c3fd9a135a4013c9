"""SAMPLERS and PRUNERS registries: a spec names a strategy and gives its settings explicitly.

Each entry pairs a pydantic settings model (unknown or mistyped settings are spec errors naming
the field) with a factory. Settings default to *our* choices, written out, rather than to the
library's defaults, which changed between Optuna 4 and 5 (TPE multivariate, constant_liar).

Every sampler is wrapped in `TrialSeeded`: its random state is re-derived before each trial from
(spec seed, trial number). Trial numbers are unique study-wide, so a resumed run, a second
process or a worker on another machine continues where the study is instead of replaying the
seeded start-up draws, while one uninterrupted run stays reproducible from the spec's seed.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optuna.samplers import BaseSampler
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloudseg.registry import Registry


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Strategy:
    settings: type[_Settings]
    build: Callable[..., Any]  # (settings, **context) -> optuna sampler / pruner


SAMPLERS: Registry[Strategy] = Registry("sampler")
PRUNERS: Registry[Strategy] = Registry("pruner")


# ---- samplers ---------------------------------------------------------------------------------
class TPESettings(_Settings):
    seed: int = 0
    multivariate: bool = True  # joint model of the parameters (conditional losses need it)
    group: bool = True  # split the conditional space into groups (loss-specific params)
    constant_liar: bool = True  # parallel workers avoid proposing the same point
    n_startup_trials: int = Field(10, ge=0)
    n_ei_candidates: int = Field(24, ge=1)


class SeedOnly(_Settings):
    seed: int = 0


class GPSettings(_Settings):
    seed: int = 0
    n_startup_trials: int = Field(10, ge=0)
    deterministic_objective: bool = False


class CmaEsSettings(_Settings):
    seed: int = 0
    n_startup_trials: int = Field(1, ge=0)
    sigma0: float | None = Field(None, gt=0)
    restart_strategy: Literal["ipop", "bipop"] | None = None
    consider_pruned_trials: bool = False


def _tpe(s: TPESettings, **_: Any):
    import optuna

    return optuna.samplers.TPESampler(
        seed=s.seed,
        multivariate=s.multivariate,
        group=s.group and s.multivariate,  # optuna requires multivariate for group
        constant_liar=s.constant_liar,
        n_startup_trials=s.n_startup_trials,
        n_ei_candidates=s.n_ei_candidates,
    )


def _random(s: SeedOnly, **_: Any):
    import optuna

    return optuna.samplers.RandomSampler(seed=s.seed)


def _grid(s: SeedOnly, *, grid: dict[str, list] | None = None, **_: Any):
    import optuna

    return optuna.samplers.GridSampler(grid or {}, seed=s.seed)


def _gp(s: GPSettings, **_: Any):
    import optuna

    return optuna.samplers.GPSampler(
        seed=s.seed,
        n_startup_trials=s.n_startup_trials,
        deterministic_objective=s.deterministic_objective,
        warn_independent_sampling=False,
    )


def _cmaes(s: CmaEsSettings, **_: Any):
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
SAMPLERS.add("random", Strategy(SeedOnly, _random))
SAMPLERS.add("grid", Strategy(SeedOnly, _grid))
SAMPLERS.add("gp", Strategy(GPSettings, _gp))
SAMPLERS.add("cmaes", Strategy(CmaEsSettings, _cmaes))


# ---- pruners ----------------------------------------------------------------------------------
class HyperbandSettings(_Settings):
    min_resource: int = Field(1, ge=1)  # epochs; max_resource is the budget's epochs
    reduction_factor: int = Field(3, ge=2)
    bootstrap_count: int = Field(0, ge=0)


class MedianSettings(_Settings):
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)
    interval_steps: int = Field(1, ge=1)
    n_min_trials: int = Field(1, ge=1)


class HalvingSettings(_Settings):
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)
    bootstrap_count: int = Field(0, ge=0)


class ThresholdSettings(_Settings):
    lower: float | None = None  # prune when the metric is below (e.g. IoU < 0.05: useless)
    upper: float | None = None
    n_warmup_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _bound(self) -> ThresholdSettings:
        if self.lower is None and self.upper is None:
            raise ValueError("give `lower` and/or `upper`")
        return self


class NoSettings(_Settings):
    pass


def _hyperband(s: HyperbandSettings, *, epochs: int, **_: Any):
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=s.min_resource,
        max_resource=epochs,
        reduction_factor=s.reduction_factor,
        bootstrap_count=s.bootstrap_count,
    )


def _median(s: MedianSettings, **_: Any):
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=s.n_startup_trials,
        n_warmup_steps=s.n_warmup_steps,
        interval_steps=s.interval_steps,
        n_min_trials=s.n_min_trials,
    )


def _halving(s: HalvingSettings, **_: Any):
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=s.min_resource,
        reduction_factor=s.reduction_factor,
        min_early_stopping_rate=s.min_early_stopping_rate,
        bootstrap_count=s.bootstrap_count,
    )


def _threshold(s: ThresholdSettings, **_: Any):
    import optuna

    return optuna.pruners.ThresholdPruner(
        lower=s.lower, upper=s.upper, n_warmup_steps=s.n_warmup_steps
    )


def _none(s: NoSettings, **_: Any):
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS.add("hyperband", Strategy(HyperbandSettings, _hyperband))
PRUNERS.add("median", Strategy(MedianSettings, _median))
PRUNERS.add("successive-halving", Strategy(HalvingSettings, _halving))
PRUNERS.add("threshold", Strategy(ThresholdSettings, _threshold))
PRUNERS.add("none", Strategy(NoSettings, _none))
# "patient" alone = stop a trial whose metric has not improved for `patience` epochs;
# any other pruner can be wrapped with the spec's `patience` key (see build_pruner).
PRUNERS.add("patient", Strategy(NoSettings, _none))


def trial_seed(seed: int, number: int, part: str = "") -> int:
    """A 32-bit seed for trial `number` of a study seeded `seed` (`part` names one of the
    sampler's random states, so they stay independent of each other)."""
    digest = hashlib.sha256(f"cloudsweep:{seed}:{number}:{part}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _random_states(sampler: Any, prefix: str = "", depth: int = 0):
    """(path, numpy RandomState) of every random state a sampler holds, its inner samplers'
    included. Optuna's samplers keep theirs in LazyRandomState attributes (`_rng`, `_cma_rng`)
    and their fallbacks in `_random_sampler` / `_independent_sampler`."""
    import numpy as np
    from optuna.samplers._lazy_random_state import LazyRandomState

    for name, value in sorted(vars(sampler).items()):
        path = f"{prefix}{name}"
        if isinstance(value, LazyRandomState):
            yield path, value.rng
        elif isinstance(value, np.random.RandomState):
            yield path, value
        elif isinstance(value, BaseSampler) and depth < 4:
            yield from _random_states(value, f"{path}.", depth + 1)


PROPOSAL_ATTR = "cloudsweep:relative_proposal"
_MISSING = object()


class TrialSeeded(BaseSampler):
    """A sampler whose randomness is a function of (seed, trial number), not of the process.

    Before each trial every random state of the wrapped sampler is seeded from
    `trial_seed(seed, trial.number, attribute)`; the wrapped sampler does the rest (TPE's model,
    the grid's bookkeeping, CMA-ES's state in the storage). Optuna's samplers draw from their
    random state only while a trial is being sampled, so one trial's draws depend on its number
    and the study's history alone. One sampler object serves one thread at a time (a worker).
    """

    def __init__(self, sampler: Any, seed: int):
        self.sampler = sampler
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"TrialSeeded({type(self.sampler).__name__}, seed={self.seed})"

    def _reseed(self, number: int) -> None:
        for path, state in _random_states(self.sampler):
            state.seed(trial_seed(self.seed, number, path))

    def before_trial(self, study, trial) -> None:
        self._reseed(trial.number)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        """The wrapped sampler's joint proposal, unless another live or finished trial already
        holds it: GP and CMA-ES have no constant liar, so workers asking at the same moment
        would all get the model's one optimum. Then this trial draws independently instead."""
        proposal = self.sampler.sample_relative(study, trial, search_space)
        if not proposal:
            return proposal
        key = sorted(proposal.items())
        for other in study.get_trials(deepcopy=False):
            held = other.system_attrs.get(PROPOSAL_ATTR)
            same_params = all(other.params.get(k, _MISSING) == v for k, v in key)
            if other.number != trial.number and (same_params or held == [list(p) for p in key]):
                return {}
        # Recorded at once (before any suggest stores the params) for trials asked meanwhile.
        # Optuna has no public way for a sampler to annotate the trial it is sampling.
        study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR,
                                             [list(p) for p in key])
        return proposal

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values: Sequence[float] | None) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: Optuna calls this so that copies of one sampler (threads, n_jobs > 1)
        stop drawing alike; per-trial seeds already differ between trials."""

    def __getattr__(self, name: str) -> Any:  # e.g. GridSampler.is_exhausted
        if name.startswith("_") or name in ("sampler", "seed"):
            raise AttributeError(name)
        return getattr(self.sampler, name)


def build_sampler(name: str, settings: _Settings, **context: Any):
    """The named sampler, wrapped in TrialSeeded: seeded per trial from `settings.seed`."""
    import optuna

    with warnings.catch_warnings():  # group, GP, ... are "experimental": we chose them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        inner = SAMPLERS.get(name).build(settings, **context)
    return TrialSeeded(inner, getattr(settings, "seed", 0))


def build_pruner(
    name: str, settings: _Settings, *, epochs: int, patience: int | None, min_delta: float
):
    import optuna

    inner = None if name == "patient" else PRUNERS.get(name).build(settings, epochs=epochs)
    if name == "patient" and patience is None:
        patience = 2
    if patience is None:
        return inner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(inner, patience=patience, min_delta=min_delta)

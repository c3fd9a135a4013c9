"""PRUNERS: each pruner a spec can name, with its settings written out and its factory.

Every pruner's settings also take `patience` / `min_delta`: with `patience` set, the pruner is
wrapped in Optuna's PatientPruner (a trial is judged only after `patience` epochs without an
improvement of more than `min_delta`); "patient" is that wrapper alone (patience 2 by default).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from cloudseg import Registry
from sweep.study.strategies import Settings, Strategy, settings_union

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

PRUNERS: Registry[Strategy] = Registry("pruner")


class PrunerSettings(Settings):
    """What every pruner takes: `patience` / `min_delta` wrap it in a PatientPruner."""

    patience: int | None = Field(None, ge=0)  # epochs without improvement before judging
    min_delta: float = Field(0.0, ge=0)  # what counts as an improvement for `patience`


class HyperbandSettings(PrunerSettings):
    """Hyperband over epochs; the budget's epochs are the maximum resource."""

    name: Literal["hyperband"] = "hyperband"
    min_resource: int = Field(1, ge=1)  # epochs; max_resource is the budget's epochs
    reduction_factor: int = Field(3, ge=2)
    bootstrap_count: int = Field(0, ge=0)


class MedianSettings(PrunerSettings):
    """Median pruner: stop a trial below the median of earlier trials at the same epoch."""

    name: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)
    interval_steps: int = Field(1, ge=1)
    n_min_trials: int = Field(1, ge=1)


class HalvingSettings(PrunerSettings):
    """Successive halving over epochs."""

    name: Literal["successive-halving"] = "successive-halving"
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)
    bootstrap_count: int = Field(0, ge=0)


class ThresholdSettings(PrunerSettings):
    """Prune a trial whose metric leaves [lower, upper]."""

    name: Literal["threshold"] = "threshold"
    lower: float | None = None  # prune when the metric is below (e.g. IoU < 0.05: useless)
    upper: float | None = None
    n_warmup_steps: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _bound(self) -> ThresholdSettings:
        if self.lower is None and self.upper is None:
            raise ValueError("give `lower` and/or `upper`")
        return self


class NoneSettings(PrunerSettings):
    """No pruning (`patience` alone still wraps it)."""

    name: Literal["none"] = "none"


class PatientSettings(PrunerSettings):
    """Stop a trial whose metric has not improved for `patience` epochs; nothing else."""

    name: Literal["patient"] = "patient"
    patience: int = Field(2, ge=0)


def _hyperband(s: HyperbandSettings, *, epochs: int, **_: Any) -> BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=s.min_resource,
        max_resource=epochs,
        reduction_factor=s.reduction_factor,
        bootstrap_count=s.bootstrap_count,
    )


def _median(s: MedianSettings, **_: Any) -> BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=s.n_startup_trials,
        n_warmup_steps=s.n_warmup_steps,
        interval_steps=s.interval_steps,
        n_min_trials=s.n_min_trials,
    )


def _halving(s: HalvingSettings, **_: Any) -> BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=s.min_resource,
        reduction_factor=s.reduction_factor,
        min_early_stopping_rate=s.min_early_stopping_rate,
        bootstrap_count=s.bootstrap_count,
    )


def _threshold(s: ThresholdSettings, **_: Any) -> BasePruner:
    import optuna

    return optuna.pruners.ThresholdPruner(
        lower=s.lower, upper=s.upper, n_warmup_steps=s.n_warmup_steps
    )


def _none(s: PrunerSettings, **_: Any) -> BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS.add("hyperband", Strategy(HyperbandSettings, _hyperband))
PRUNERS.add("median", Strategy(MedianSettings, _median))
PRUNERS.add("successive-halving", Strategy(HalvingSettings, _halving))
PRUNERS.add("threshold", Strategy(ThresholdSettings, _threshold))
PRUNERS.add("none", Strategy(NoneSettings, _none))
PRUNERS.add("patient", Strategy(PatientSettings, lambda s, **_: None))  # the wrapper alone

PrunerSection = settings_union(PRUNERS)  # a spec's `pruner:` section


def build_pruner(settings: PrunerSettings, *, epochs: int) -> BasePruner:
    """The pruner `settings` names, wrapped in PatientPruner when it sets `patience`."""
    import optuna

    inner = PRUNERS.get(settings.name).build(settings, epochs=epochs)
    if settings.patience is None:
        return inner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(
            inner, patience=settings.patience, min_delta=settings.min_delta
        )

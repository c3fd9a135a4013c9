"""What samplers and pruners share: a registry entry pairs a typed settings model with its
factory, and a spec's `sampler:` / `pruner:` section is one of the registered settings models,
picked by its `name` (a discriminated union built from the registry).

    samplers  SAMPLERS, their settings, `build_sampler` (every sampler seeded per trial)
    pruners   PRUNERS, their settings (with the `patience` wrapper), `build_pruner`
    seeding   `TrialSeeded`: a sampler's random state as a function of the trial number

Settings default to *our* choices, written out, rather than to the library's defaults, which
changed between Optuna 4 and 5 (TPE multivariate, constant_liar).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field

from cloudseg import Registry


class Settings(BaseModel):
    """A strategy's settings; `name` (a Literal in each subclass) says which strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str


@dataclass(frozen=True)
class Strategy:
    """A registry entry: the settings model a spec's section must match and the factory it feeds."""

    settings: type[Settings]
    build: Callable[..., Any]  # (settings, **context) -> optuna sampler / pruner


def settings_union(registry: Registry[Strategy]) -> Any:
    """The type of a spec section: one of the registry's settings models, chosen by `name`, so
    an error names the field (`pruner.reduction_factor: ...`).
    """
    models = tuple(dict.fromkeys(registry.get(n).settings for n in registry))
    return Annotated[Union[models], Field(discriminator="name")]  # noqa: UP007 - built at runtime


"""Declarative search space with conditions, turned into define-by-run `trial.suggest_*` calls.

A parameter is keyed by its dotted RunConfig path (`loss.gamma`, `optim.lr`), which is also its
Optuna name, so the dashboard shows real config fields. Conditions:
- explicit: `when: {loss.name: [tversky, focal-tversky]}`;
- implicit for loss parameters: `loss.X` is drawn only when the chosen loss uses field X
  (asked of `cloudseg.losses.LOSS_PARAMS`), e.g. gamma only for focal losses;
- `complement: loss.dice_weight` sets that field to 1 - value (mixed weights a + b = 1);
- `relative_to: measured_pos_weight` scales the range by the study's measured class ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from cloudseg import ConfigError, RunConfig

if TYPE_CHECKING:
    import optuna


class ParamSpec(BaseModel):
    """One search-space parameter: its type and range or choices, grid values and conditions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    grid: list[Any] | None = None  # values for the grid sampler (numeric params)
    when: dict[str, list[Any]] = {}
    relative_to: Literal["measured_pos_weight"] | None = None
    complement: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        odd = [v for v in [*(self.choices or []), *(self.grid or []),
                           *(v for vs in self.when.values() for v in vs)]
               if v is not None and not isinstance(v, str | int | float | bool)]
        if odd:  # Optuna stores choices as JSON scalars; a list or mapping cannot be one
            raise ValueError(f"choices, grid and when values must be numbers, strings, booleans "
                             f"or null; got {odd[0]!r}")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("categorical takes `choices`, not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs `low` and `high`")
        if not all(math.isfinite(v) for v in (self.low, self.high, self.step or 1.0)):
            raise ValueError(f"low, high and step must be finite (low={self.low}, "
                             f"high={self.high}, step={self.step})")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"`step` must be > 0 (step={self.step})")
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold (low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (low={self.low})")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log` cannot be combined")
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not `choices`")
        if self.type == "int":  # Optuna would truncate 2.5 to 2 and draw below the stated low
            odd = [f"{k}={v:g}" for k, v in (("low", self.low), ("high", self.high),
                                             ("step", self.step)) if v is not None and v % 1]
            odd += [f"grid value {v!r}" for v in self.grid or []
                    if not isinstance(v, int | float) or isinstance(v, bool) or v % 1]
            if odd:
                raise ValueError(f"int takes whole numbers; got {', '.join(odd)}")
        return self

    def grid_values(self) -> list[Any] | None:
        """Values the grid sampler walks: the choices, or the numeric `grid`."""
        return list(self.choices or []) if self.type == "categorical" else self.grid

    def values_to_check(self) -> list[Any]:
        """Every value a trial could be given, for checking a spec before any trial."""
        if self.type == "categorical":
            return list(self.choices or [])
        low, high = self.bounds()
        cast = int if self.type == "int" else float
        return [cast(low), cast(high), *(self.grid or [])]

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter, which the model's validator requires."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs `low` and `high`")
        return self.low, self.high


def loss_fields() -> dict[str, set[str]]:
    """Loss name → the LossConfig fields it uses (declared next to the losses)."""
    from cloudseg import LOSS_PARAMS

    return {name: set(fields) for name, fields in LOSS_PARAMS.items()}


def _field_exists(path: str) -> bool:
    section, _, field = path.partition(".")
    sub = RunConfig.model_fields.get(section)
    return bool(field) and sub is not None and field in getattr(sub.annotation, "model_fields", {})


RESERVED = {"data.root", "data.subset_seed"}  # set by the sweep itself for every trial



def _names_check(src: str, where: str, section: str, names: list[Any]) -> None:
    lookup: Callable[[str], object]
    if section == "loss":
        from cloudseg import LOSSES

        lookup = LOSSES.get
    else:
        from cloudseg import MODELS

        lookup = MODELS.get
    for name in names:
        try:
            lookup(name)
        except ConfigError as err:
            raise ConfigError(f"{src}: {where}: {err}") from None


def _depends_on(path: str, p: ParamSpec, space: dict[str, ParamSpec]) -> set[str]:
    """The parameters that must be drawn before `path`: its `when` and, for a loss field,
    loss.name (the implicit condition).
    """
    deps = set(p.when)
    if path.startswith("loss.") and path != "loss.name" and "loss.name" in space:
        deps.add("loss.name")
    return deps & set(space)


def _cycle(space: dict[str, ParamSpec]) -> list[str] | None:
    """One dependency cycle among the space's conditions (`a -> b -> a`), or None."""
    deps = {k: sorted(_depends_on(k, p, space)) for k, p in space.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in deps[node]:
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(space):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _check_loss_values(space: dict[str, ParamSpec], fixed: RunConfig, src: str,
                       loss_names: list[Any]) -> None:
    """Each loss value a trial could get, checked by the loss's own rules (torch-free)."""
    from cloudseg import LossConfig, check_loss_config

    uses = loss_fields()
    for name in loss_names:
        base = {k: getattr(fixed.loss, k) for k in fixed.loss.model_fields_set if k in uses[name]}
        tries: list[tuple[str, dict[str, Any]]] = [("fixed.loss", {})]
        for path, p in space.items():
            field = path.partition(".")[2]
            if not path.startswith("loss.") or field not in uses[name]:
                continue
            if name not in p.when.get("loss.name", [name]):
                continue
            for value in p.values_to_check():
                drawn = {field: value}
                if p.complement and p.complement.startswith("loss.") and value is not None:
                    drawn[p.complement.partition(".")[2]] = round(1.0 - value, 12)
                tries.append((f"space.{path}", drawn))
        for where, drawn in tries:
            try:
                cfg = LossConfig.model_validate({**base, **drawn, "name": name})
                check_loss_config(cfg)
            except ValidationError:
                continue  # a type error: the run-config check names it
            except ConfigError as err:
                raise ConfigError(f"{src}: {where}: {err}") from None


def check_space(space: dict[str, ParamSpec], fixed: RunConfig, src: str) -> None:
    """Everything a trial would otherwise discover late: paths, conditions, names, types."""
    uses = loss_fields()
    loss_names = space["loss.name"].choices if "loss.name" in space else None
    if loss_names is None:
        loss_names = [fixed.loss.name]
    for section in ("loss", "model"):
        if f"{section}.name" in space:
            names = space[f"{section}.name"].values_to_check()
            _names_check(src, f"space.{section}.name", section, names)
        _names_check(src, f"fixed.{section}.name", section, [getattr(fixed, section).name])
    encoders = space["model.encoder"].choices if "model.encoder" in space else None
    where_enc = "space.model.encoder" if encoders else "fixed.model.encoder"
    if encoders is None and "encoder" in fixed.model.model_fields_set:
        encoders = [fixed.model.encoder]
    if encoders:
        from cloudseg import check_encoder

        for name in encoders:
            try:
                check_encoder(name)
            except ConfigError as err:
                raise ConfigError(f"{src}: {where_enc}: {str(err)[:300]}") from None
    for path, p in space.items():
        where = f"{src}: space.{path}"
        if not _field_exists(path) or path in RESERVED:
            raise ConfigError(f"{where}: unknown or reserved run-config field {path!r}")
        for cond, values in p.when.items():
            if cond not in space:
                raise ConfigError(f"{where}: when: condition on unknown parameter {cond!r}")
            other = space[cond]
            if other.type == "categorical" and not set(values) <= set(other.choices or []):
                raise ConfigError(f"{where}: when: {cond} values {values} not in its choices")
        if p.complement is not None and (not _field_exists(p.complement) or p.complement in space):
            raise ConfigError(f"{where}: complement: {p.complement!r} is not a free field")
        if p.relative_to and (path != "loss.pos_weight" or p.type != "float"):
            raise ConfigError(f"{where}: relative_to applies to a float loss.pos_weight only")
        if path.startswith("loss.") and path != "loss.name":
            field = path.split(".", 1)[1]
            if not any(field in uses.get(n, set()) for n in loss_names):
                raise ConfigError(f"{where}: no loss among {loss_names} uses {field!r}")
        for value in p.values_to_check():  # both ends of a range, every choice and grid value
            fixed.with_overrides({path: value}, where)
    if cycle := _cycle(space):
        what = "a parameter conditioned on itself" if len(set(cycle)) == 1 else (
            "each waits for the other to be drawn")
        if "loss.name" in cycle:
            what += "; a loss field waits for loss.name"
        raise ConfigError(f"{src}: space: conditions form a cycle: {' -> '.join(cycle)} ({what})")
    _check_loss_values(space, fixed, src, [n for n in loss_names if n in uses])


def _active(
    path: str, p: ParamSpec, chosen: dict[str, Any], loss_name: str | None,
    uses: dict[str, set[str]],
) -> bool:
    if any(chosen.get(cond) not in values for cond, values in p.when.items()):
        return False
    if path.startswith("loss.") and path != "loss.name":
        used = uses.get(loss_name, set()) if loss_name is not None else set()
        return path.split(".", 1)[1] in used
    return True


def _ready(path: str, p: ParamSpec, chosen: dict[str, Any], space: dict[str, ParamSpec]) -> bool:
    deps = set(p.when)
    if path.startswith("loss.") and path != "loss.name" and "loss.name" in space:
        deps.add("loss.name")
    return deps <= set(chosen)


def suggest(
    trial: optuna.Trial,
    space: dict[str, ParamSpec],
    fixed: RunConfig,
    context: dict[str, float],
) -> dict[str, Any]:
    """Draw the active parameters in dependency order; returns dotted path → value."""
    uses = loss_fields()
    chosen: dict[str, Any] = {}
    pending = dict(space)
    while pending:
        ready = [k for k, p in pending.items() if _ready(k, p, chosen, space)]
        if not ready:  # a condition cycle; check_space cannot see it, so name it here
            raise ConfigError(f"space: conditions form a cycle among {sorted(pending)}")
        for path in ready:
            p = pending.pop(path)
            loss_name = chosen.get("loss.name", fixed.loss.name)
            if not _active(path, p, chosen, loss_name, uses):
                chosen[path] = None  # resolved as inactive: dependants see None
                continue
            chosen[path] = _draw(trial, path, p, context)
            if p.complement:
                chosen[p.complement] = round(1.0 - chosen[path], 12)
    return {k: v for k, v in chosen.items() if v is not None}


def _draw(trial: optuna.Trial, path: str, p: ParamSpec, context: dict[str, float]) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(path, p.choices or [])
    low, high = p.bounds()
    if p.type == "int":
        return trial.suggest_int(path, int(low), int(high), step=int(p.step or 1), log=p.log)
    scale = context.get(p.relative_to, 1.0) if p.relative_to else 1.0
    return trial.suggest_float(path, low * scale, high * scale, step=p.step, log=p.log)

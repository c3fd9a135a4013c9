"""StudySpec: a study described in `studies/NAME.yaml`, validated once, before anything is created.

Every error is a `sweep.errors.SpecError` (a cloudseg ConfigError) whose message names the file
and the field (`studies/x.yaml: pruner.reduction_factor: ...`), so the CLI prints one line.
Loss and model values are checked here too, each end of a range and every choice against
cloudseg's own config models and rules, so a bad value fails `sweep run`, not every trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from cloudseg import ConfigError, RunConfig, format_errors, read_yaml
from sweep.errors import SpecError
from sweep.study.pruners import PRUNERS, HyperbandSettings, PrunerSection, build_pruner
from sweep.study.samplers import SAMPLERS, SamplerSection, TPESettings, build_sampler
from sweep.study.space import ParamSpec, check_space

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

    from sweep.execution.racing import RaceSettings
    from sweep.study.seeding import TrialSeeded

# "scene-iou" scores the best epoch by IoU per whole validation scene averaged over scenes (the
# 38-Cloud figure; cloudseg train.val_metric "scene"). Its cost: every trial validates every
# whole 384 px patch of the held-out scenes each epoch (on 38-Cloud ~20 % of 8,400 patches,
# ~1,700, about a fifth of a full training epoch), not a capped set of crops, so
# budget.max_val_patches must stay null.
Metric = Literal["iou", "dice", "precision", "recall", "specificity", "accuracy", "scene-iou"]
METRICS: tuple[str, ...] = get_args(Metric)
# ./studies (a user's own specs) first, then the specs shipped inside the package (package data,
# so an installed wheel has them; the checkout's studies/ is a link to the same folder).
STUDIES_DIRS = (Path("studies"), Path(__file__).resolve().parents[1] / "studies")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Budget(_Frozen):
    """What one trial may spend; these override the `fixed` run config."""

    epochs: int = Field(10, ge=1)
    train_fraction: float = Field(0.5, gt=0, le=1)  # subset redrawn per trial (subset_seed)
    crop: int | None = Field(256, ge=32, le=384)
    batches_per_epoch: int | None = Field(None, ge=1)  # -> train.max_steps_per_epoch
    max_val_patches: int | None = Field(None, ge=1)
    trial_timeout: float | None = Field(None, gt=0)  # seconds; the trial fails as "timeout"


class Execution(_Frozen):
    """Worker resilience: a worker that stops heart-beating for grace_period seconds has its
    trial failed and re-queued (same params) up to max_retry times.
    """

    heartbeat_interval: int = Field(10, ge=1)
    grace_period: int = Field(60, ge=1)
    max_retry: int = Field(2, ge=0)
    # torch intra-op threads per trial (None: torch's default). Tiny CPU models run fastest on
    # one thread; spinning threads on a busy machine slow them down many times over.
    # $CLOUDSWEEP_TRIAL_THREADS overrides it.
    trial_threads: int | None = Field(None, ge=1)
    # Trials that share one GPU, each in its own process (`sweep run` starts this many local
    # workers per visible GPU by default): for models that leave most of a large GPU idle.
    trials_per_gpu: int = Field(1, ge=1, le=16)
    # Stop the study after this many trials in a row fail the same way (a broken install or
    # data set fails every trial); null: never (sweep.execution.halt).
    max_consecutive_failures: int | None = Field(5, ge=1)


class Confirm(_Frozen):
    """Once the search is done, the `top` configs race (sweep.execution.racing): rounds of
    `repeats` fresh runs each (same budget, not pruned, every random draw new) until the leader
    beats the rest at `level`, or each config left has `max_runs` runs (default 3 rounds).
    """

    top: int = Field(3, ge=1, le=50)
    repeats: int = Field(3, ge=1, le=50)  # (two runs are the fewest that give an interval)
    max_runs: int | None = Field(None, ge=2, le=500)
    level: float = Field(0.95, gt=0.5, lt=1)

    def settings(self) -> RaceSettings:
        """The race these settings run."""
        from sweep.execution.racing import RaceSettings

        runs = self.max_runs if self.max_runs is not None else 3 * self.repeats
        return RaceSettings(self.top, self.repeats, max(runs, self.repeats), self.level)


class StopSearch(_Frozen):
    """End the search before its target once the answer is settled: after `min_trials` search
    trials the leader's config gets its first confirmation round (the run-to-run noise sd is
    measured from it), and once none of the last `patience` complete search trials came within
    one noise sd of the leader's search value, no further search trial starts
    (sweep.execution.settle). Needs `confirm`.
    """

    patience: int = Field(10, ge=1)
    min_trials: int = Field(10, ge=2)


# What a trial's value is measured at: 0.5 (the loss's own boundary, cloudseg's
# train.threshold), "official" (12/255, the 38-Cloud benchmark's) or "tuned" (the edge with the
# best validation IoU, found from the same pass's histograms).
THRESHOLD_RULE = {0.5: "fixed", "official": "official", "tuned": "tuned"}


def study_threshold_rule(study_attrs: dict[str, Any]) -> str:
    """The threshold rule of a stored study (its `spec` attribute); "fixed" for a study
    created before specs had `threshold`.
    """
    spec = study_attrs.get("spec") or {}
    return THRESHOLD_RULE.get(spec.get("threshold", 0.5), "fixed")


def stored_confirm(study_attrs: dict[str, Any]) -> Confirm | None:
    """The `confirm` section of a stored study's spec, read alone (a spec an older version
    stored need not validate whole for its ranking to show); None when absent or unreadable.
    """
    raw = (study_attrs.get("spec") or {}).get("confirm")
    try:
        return Confirm.model_validate(raw) if raw else None
    except ValidationError:
        return None


class StudySpec(_Frozen):
    """A study: metric, sampler, pruner, per-trial budget, fixed config and search space."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    metric: Metric = "iou"  # validation metric of the best epoch
    direction: Literal["maximize", "minimize"] = "maximize"
    data: Path | None = None  # data root; --data and CLOUDSWEEP_DATA take precedence
    synthesize_if_missing: bool = False  # write a synthetic tree at `data` on first use (demo)
    seed: int = 0  # study seed: per-trial subset seeds derive from it
    sampler: SamplerSection = TPESettings()
    pruner: PrunerSection = HyperbandSettings()
    budget: Budget = Budget()
    execution: Execution = Execution()
    # pydantic takes the float literal (0.5 and no other number); typing's Literal does not
    threshold: Literal[0.5, "official", "tuned"] = 0.5  # type: ignore[valid-type]
    confirm: Confirm | None = None  # off unless the spec asks
    stop_search: StopSearch | None = None  # off unless the spec asks (needs confirm)
    fixed: RunConfig = RunConfig()  # partial: only the fields it sets are shared by every trial
    space: dict[str, ParamSpec] = {}
    source: str = Field("<spec>", exclude=True)

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _default_name(cls, value: Any, info: ValidationInfo) -> Any:
        """A section without `name` means the default strategy, as an absent section does."""
        if isinstance(value, dict) and "name" not in value:
            field = info.field_name or ""  # always set for a field validator
            return {"name": DEFAULT_STRATEGY[field], **value}
        return value

    @field_serializer("fixed")
    def _partial(self, fixed: RunConfig) -> dict[str, Any]:
        return fixed.model_dump(mode="json", exclude_unset=True)

    # --- derived, validated views ----------------------------------------------------------
    @property
    def threshold_rule(self) -> str:
        """`cloudseg`'s train.select_at: "fixed", "official" or "tuned"."""
        return THRESHOLD_RULE[self.threshold]

    @property
    def record_key(self) -> str:
        """The key of `metric` at the spec's threshold in an epoch record and in the `metrics`
        attr (`iou`, `iou_official`, `scene_iou_tuned`, ...).
        """
        from cloudseg import RULE_SUFFIX

        return self.metric.replace("-", "_") + RULE_SUFFIX[self.threshold_rule]

    @property
    def val_metric(self) -> str:
        """`cloudseg`'s train.val_metric for every trial."""
        return "scene" if self.metric == "scene-iou" else "patch"

    @property
    def model_names(self) -> list[str]:
        """The models a trial may build: the space's `model.name` choices, else the fixed one."""
        model = self.space.get("model.name")
        return [str(n) for n in (model.choices or [])] if model else [self.fixed.model.name]

    @property
    def sampler_name(self) -> str:
        """The SAMPLERS entry the spec names."""
        return self.sampler.name

    @property
    def pruner_name(self) -> str:
        """The PRUNERS entry the spec names."""
        return self.pruner.name

    def build_sampler(self) -> TrialSeeded:
        """The spec's sampler, seeded per trial (every process of a study builds the same one:
        a per-process seed would make workers repeat each other's grid points).
        """
        grid = {k: p.grid_values() for k, p in self.space.items()}
        return build_sampler(self.sampler, grid=grid)

    def build_pruner(self) -> BasePruner:
        """The spec's pruner over the budget's epochs (see `build_pruner`)."""
        return build_pruner(self.pruner, epochs=self.budget.epochs)

    def to_dict(self) -> dict[str, Any]:
        """The spec as its YAML would hold it (JSON types)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_stored(cls, data: dict[str, Any], source: str) -> StudySpec:
        """A spec stored by `create_study` (checked in full when it was created): rebuilt into
        its typed models without the load-time checks (registries, space, input sizes).
        """
        try:
            return cls.model_validate({**data, "source": source})
        except ValidationError as err:
            raise SpecError(_format(err, source)) from None


DEFAULT_STRATEGY = {"sampler": "tpe", "pruner": "hyperband"}
_REGISTRIES = {"sampler": SAMPLERS, "pruner": PRUNERS}


def _format(err: ValidationError, src: str) -> str:
    """Pydantic's errors as one line; a strategy's name (the union's tag) is left out of the
    field path: `pruner.reduction_factor`, not `pruner.hyperband.reduction_factor`.
    """
    errors = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if len(loc) > 1 and loc[0] in _REGISTRIES and loc[1] in _REGISTRIES[loc[0]]:
            loc = (loc[0], *loc[2:])
        errors.append({**e, "loc": loc})
    return format_errors(errors, src)


def _check_names(data: dict[str, Any], src: str) -> None:
    """An unknown sampler or pruner lists the registered ones."""
    for field, registry in _REGISTRIES.items():
        section = data.get(field)
        if isinstance(section, dict) and "name" in section:
            try:
                registry.get(section["name"])
            except ConfigError as err:
                raise SpecError(f"{src}: {field}.name: {err}") from None


def _check_grid(spec: StudySpec, src: str) -> None:
    if spec.sampler.name == "grid":
        bad = [k for k, p in spec.space.items() if p.grid_values() is None or p.when]
        if bad:
            raise SpecError(
                f"{src}: sampler.name: grid needs every space parameter to list `choices` or "
                f"`grid` values and no `when` condition; not so for {', '.join(bad)}"
            )


def _check_stop_search(spec: StudySpec, src: str) -> None:
    if spec.stop_search is not None and spec.confirm is None:
        raise SpecError(f"{src}: stop_search: measures the run-to-run noise with confirmation "
                        "runs; add a `confirm` section or turn it off (stop_search: null, or "
                        "--set stop_search=null)")


def _check_metric(spec: StudySpec, src: str) -> None:
    train = spec.fixed.train
    if "val_metric" in train.model_fields_set:
        raise SpecError(f"{src}: fixed.train.val_metric: set by `metric` "
                        "(scene-iou scores whole scenes); remove it")
    if "select_at" in train.model_fields_set:
        raise SpecError(f"{src}: fixed.train.select_at: set by `threshold`; remove it")
    if spec.threshold == 0.5 and train.threshold != 0.5:
        raise SpecError(f"{src}: fixed.train.threshold: `threshold: 0.5` scores trials at 0.5 "
                        f"(got {train.threshold}); remove it or choose official/tuned")
    cap = spec.budget.max_val_patches
    if spec.metric == "scene-iou" and cap is not None:
        raise SpecError(
            f"{src}: budget.max_val_patches: metric scene-iou scores whole validation scenes and "
            f"a capped scene is not a scene; set it to null (got {cap})"
        )


def _check_input_sizes(spec: StudySpec, src: str) -> None:
    """Every model in play takes every crop a trial can get (a 100 px crop fails every U-Net)."""
    from cloudseg import MODELS, check_input_size

    crop = spec.space.get("data.crop")
    crops, where = ((crop.values_to_check(), "space.data.crop") if crop else
                    ([spec.budget.crop or 384], "budget.crop"))
    for name in (n for n in spec.model_names if n in MODELS):
        for side in crops:
            try:
                check_input_size(name, int(side))
            except ConfigError as err:
                raise SpecError(f"{src}: {where}: {err}") from None


def parse_spec(data: Any, source: str, default_name: str | None = None) -> StudySpec:
    """Validate a mapping into a StudySpec: structure, strategies, fixed config, space, and
    every loss and model value a trial could get (so no trial fails on a spec's typo).
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level")
    data = dict(data)
    if default_name and "name" not in data:
        data["name"] = default_name
    _check_names(data, source)
    spec = StudySpec.from_stored(data, source)
    _check_grid(spec, source)
    _check_metric(spec, source)
    _check_stop_search(spec, source)
    try:
        check_space(spec.space, spec.fixed, source)
    except ConfigError as err:  # cloudseg's own checks; the message names file and field
        raise SpecError(str(err)) from None
    _check_input_sizes(spec, source)
    if not spec.space:
        raise SpecError(f"{source}: space: empty; a study searches at least one parameter "
                        "(every trial would train the same config): add one, or use "
                        "`cloudseg train` for a single run")
    return spec


def grid_size(spec: StudySpec) -> int | None:
    """How many distinct points a grid spec has (the product of its values); None otherwise."""
    if spec.sampler.name != "grid":
        return None
    size = 1
    for param in spec.space.values():
        size *= len(param.grid_values() or [])
    return size


def available_studies() -> list[str]:
    """Names of the local and shipped study specs, for listings and unknown-study errors."""
    names: set[str] = set()
    for folder in STUDIES_DIRS:
        if folder.is_dir():
            names |= {p.stem for p in folder.glob("*.yaml")}
    return sorted(names)


def find_spec_file(study: str) -> Path:
    """`--study NAME` → studies/NAME.yaml (cwd first, then the project's); a path works too."""
    as_path = Path(study)
    if as_path.suffix in (".yaml", ".yml") or as_path.exists():
        if not as_path.is_file():
            raise SpecError(f"{study}: study spec file not found")
        return as_path
    for folder in STUDIES_DIRS:
        candidate = folder / f"{study}.yaml"
        if candidate.is_file():
            return candidate
    listed = ", ".join(available_studies()) or "none"
    raise SpecError(f"unknown study {study!r}; available: {listed} (studies/*.yaml)")


def load_spec(study: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Read, validate and check the spec named or found at `study` (see `find_spec_file`),
    with `overrides` (`KEY=VALUE`, sweep.study.overrides) applied before it is validated.
    """
    from sweep.study.overrides import apply_overrides, describe_overrides

    path = find_spec_file(str(study))
    try:
        data = read_yaml(path, "study spec")
    except ConfigError as err:  # not YAML, duplicate keys, not text: the message names the file
        raise SpecError(str(err)) from None
    if overrides:
        if not isinstance(data, dict):
            raise SpecError(f"{path}: expected a mapping at the top level")
        data = apply_overrides(data, overrides)
    return parse_spec(data, f"{path}{describe_overrides(overrides)}", default_name=path.stem)

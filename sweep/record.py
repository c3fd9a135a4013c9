"""TrialRecord: the one typed contract for what a trial stores in its Optuna user attributes.

Writers (the objective, the target, the worker log) call `save`; readers (status, progress,
export, model card, mirror, API, CLI) call `load`; nothing else names a trial attribute. The
names on disk are those the sweep has always written (`config`, `history`, `best_epoch`,
`metrics`, `fit_seconds`, `failure`, ...), so a study written before this record existed loads,
and optuna-dashboard shows the same attributes.

`load` never fails: a trial is written piece by piece while it runs and a worker may die half
way, so a missing attribute loads as None or empty, one that does not fit its type is skipped
(logged at debug level), and attributes this version does not know are kept, uninterpreted, in
`extra`. `save` writes only the fields a record sets, so a trial can be recorded step by step.
A new attribute is one new field of `TrialRecord`: it is stored under the field's name.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

if TYPE_CHECKING:
    from cloudseg import RunConfig

log = logging.getLogger(__name__)

Number = int | float  # counts (tp, fp, ...) stay ints, as stored
# A validation figure: a number, or `scene_ious` {threshold rule: {scene: IoU}}.
Figure = Number | dict[str, dict[str, float]] | None


class FailureKind(enum.StrEnum):
    """Why a trial gave no clean result (attribute `failure`). `FailureKind("x")` raises
    ValueError for a kind not listed; `FailureKind.read` turns one into UNKNOWN instead.
    """

    OOM = "oom"  # out of memory: COMPLETE with the worst value, so TPE steers away
    DIVERGED = "diverged"  # the loss became nan or inf
    DATA = "data"  # the data layout or cache is broken
    TIMEOUT = "timeout"  # longer than budget.trial_timeout
    KILLED = "killed"  # the trial process was killed by a signal (retried once)
    BUG = "bug"  # anything else training or the trial config raised
    INTERRUPTED = "interrupted"  # Ctrl-C
    SURPLUS = "surplus"  # beyond the study-wide target: ended before any training
    DUPLICATE = "duplicate"  # a confirmation another trial already holds: ended before training
    UNKNOWN = "unknown"  # a stored kind this version does not know (read, never written)

    @classmethod
    def read(cls, stored: Any) -> FailureKind | None:
        """A stored `failure` value: empty → None, a kind this version lacks → UNKNOWN."""
        if stored is None or stored == "":
            return None
        try:
            return cls(stored)
        except ValueError:
            log.debug("unknown failure kind %r read as %r", stored, cls.UNKNOWN.value)
            return cls.UNKNOWN


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


_EPOCH_FIELDS = ("epoch", "train_loss", "val_loss", "seconds", "images_per_s")


class EpochEntry(_Frozen):
    """One epoch of the learning curve: cloudseg's `EpochRecord.as_dict()`, stored flat."""

    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    seconds: float | None = None
    images_per_s: float | None = None
    metrics: dict[str, Figure] = {}  # validation figures: iou, tp, ..., scene_iou

    @model_validator(mode="before")
    @classmethod
    def _split_flat(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "metrics" not in data:
            fixed = {k: data[k] for k in _EPOCH_FIELDS if k in data}
            return {**fixed, "metrics": {k: v for k, v in data.items() if k not in fixed}}
        return data

    def as_dict(self) -> dict[str, Any]:
        """The stored (flat) form: the fixed fields given, then the metrics."""
        fixed = {k: getattr(self, k) for k in _EPOCH_FIELDS if k in self.model_fields_set}
        return {**fixed, **self.metrics}

    def value(self, key: str) -> Any:
        """A column of the curve by its stored name (`train_loss`, `iou`, ...)."""
        return getattr(self, key) if key in _EPOCH_FIELDS else self.metrics.get(key)


class Timings(_Frozen):
    """How long the fit took and how fast it trained (attributes of the same names)."""

    fit_seconds: float | None = None
    images_per_s: float | None = None
    fit_started_at: float | None = None  # Unix time the fit began (its first step follows)


class DataInfo(_Frozen):
    """What the trial's data came to (attribute `data`)."""

    n_train: int | None = None
    n_val: int | None = None
    pos_weight: float | None = None
    data_on_device: bool | None = None  # the whole data set lived on the GPU
    compiled: bool | None = None  # the model ran through torch.compile


class SceneSplit(_Frozen):
    """The scenes a trial trained and validated on (attribute `scenes`)."""

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()


class Artifacts(_Frozen):
    """Optuna artifact ids of a trial's files (attribute `artifacts`, name → id)."""

    model_config = ConfigDict(frozen=True, extra="allow")  # a file this version does not name
    checkpoint: str | None = None
    curve: str | None = None
    overlay: str | None = None
    overlay_masks: str | None = None
    traceback: str | None = None  # a failed trial's traceback (text)

    def by_name(self) -> dict[str, str]:
        """Every artifact present, as the stored name → id mapping."""
        named = {k: v for k, v in self.model_dump().items() if v is not None}
        return {str(k): str(v) for k, v in named.items()}


class TrialRecord(_Frozen):
    """Everything a trial stores beside Optuna's own state, value, params and intermediates."""

    worker: str | None = None  # the worker that ran it (trial_log.worker_id)
    subset_seed: int | None = None  # its training subset, from the study seed and trial number
    config: dict[str, Any] | None = None  # the run config as stored (RunConfig.to_dict())
    history: tuple[EpochEntry, ...] = ()
    best_epoch: int | None = None
    metrics: dict[str, Figure] | None = None  # the best epoch's validation figures
    timings: Timings = Timings()
    peak_memory_mb: float | None = None
    data: DataInfo | None = None
    scenes: SceneSplit | None = None
    artifacts: Artifacts = Artifacts()
    weights_sha256: str | None = None  # of the checkpoint artifact: the bundle's identity
    failure: FailureKind | None = None
    failure_message: str | None = None
    confirms: int | None = None  # a confirmation run: the number of the trial it repeats
    confirm_repeat: int | None = None  # which repeat of that trial (1..repeats)
    extra: dict[str, Any] = {}  # attributes this version does not know, kept as stored

    @property
    def failed(self) -> bool:
        """A failure class was recorded (an OOM trial is COMPLETE and still failed)."""
        return self.failure is not None

    def scene_ious(self, rule: str) -> dict[str, float]:
        """The best epoch's IoU per validation scene at threshold `rule`; {} when not measured."""
        per_rule = (self.metrics or {}).get("scene_ious")
        found = per_rule.get(rule) if isinstance(per_rule, dict) else None
        return dict(found) if found else {}

    def config_part(self, part: str) -> dict[str, Any]:
        """One section of the stored config (`model`, `loss`, ...); {} when not recorded."""
        section = (self.config or {}).get(part)
        return section if isinstance(section, dict) else {}

    def run_config(self, source: str) -> RunConfig:
        """The stored config as a `RunConfig`: validated here, at the edge, not on every load
        (a config an older cloudseg wrote must not stop `sweep status`).
        """
        from cloudseg import parse_run_config

        return parse_run_config(self.config, source)


# ---- the attributes on disk -------------------------------------------------------------------
_TIMING_ATTRS = tuple(Timings.model_fields)
_OWN_FIELDS = ("timings", "extra", "history", "failure")  # each read and written its own way
_ATTR_FIELDS = tuple(f for f in TrialRecord.model_fields if f not in _OWN_FIELDS)


def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation = model.model_fields[name].annotation
    if annotation is None:  # pydantic's type allows it; every field here is annotated
        raise TypeError(f"{model.__name__}.{name} has no annotation")
    return TypeAdapter(annotation)


_ADAPTERS = {name: _adapter(TrialRecord, name) for name in _ATTR_FIELDS}
_ADAPTERS.update({name: _adapter(Timings, name) for name in _TIMING_ATTRS})


def stored_form(value: Any) -> Any:
    """A field value as the JSON Optuna stores (the shape the sweep always wrote)."""
    if isinstance(value, Artifacts):
        return value.by_name()
    if isinstance(value, BaseModel):
        return {k: stored_form(v) for k, v in value.model_dump(exclude_none=True).items()}
    if isinstance(value, tuple | list):
        return [stored_form(v) for v in value]
    return value


def to_attrs(record: TrialRecord) -> dict[str, Any]:
    """The user attributes `record` sets, by their stored names."""
    out: dict[str, Any] = {}
    for name in TrialRecord.model_fields:
        if name not in record.model_fields_set:
            continue
        value = getattr(record, name)
        if name == "timings":
            out.update(value.model_dump(include=value.model_fields_set))
        elif name == "extra":
            out.update(value)
        elif name == "history":
            out[name] = [entry.as_dict() for entry in value]
        elif name == "failure":
            out[name] = None if value is None else value.value
        else:
            out[name] = stored_form(value)
    return out


def _entries(stored: Any) -> tuple[EpochEntry, ...]:
    """The learning curve, skipping any entry that is not an epoch record."""
    entries = []
    for item in stored if isinstance(stored, list | tuple) else ():
        try:
            entries.append(EpochEntry.model_validate(item))
        except ValidationError:
            log.debug("history entry skipped: %r", item)
    return tuple(entries)


def _checked(name: str, stored: Any) -> tuple[bool, Any]:
    try:
        return True, _ADAPTERS[name].validate_python(stored)
    except ValidationError as err:
        log.debug("user attribute %r skipped: %s", name, err.errors()[0]["msg"])
        return False, None


def from_attrs(attrs: Mapping[str, Any], fields: Collection[str] | None = None) -> TrialRecord:
    """A record from stored user attributes, however partial or old (never raises); only the
    record `fields` named, when given (a view over every trial reads what it shows).
    """
    found: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, stored in attrs.items():
        if fields is not None and _field_of(key) not in fields:
            continue
        if key == "history":
            found[key] = _entries(stored)
        elif key == "failure":
            found[key] = FailureKind.read(stored)
        elif key in _TIMING_ATTRS or key in _ATTR_FIELDS:
            ok, value = _checked(key, stored)
            if ok:
                (timings if key in _TIMING_ATTRS else found)[key] = value
        else:
            extra[key] = stored
    if timings:
        found["timings"] = Timings(**timings)
    if extra:
        found["extra"] = extra
    return TrialRecord(**found)


def _field_of(key: str) -> str:
    """The record field an attribute belongs to."""
    if key in _TIMING_ATTRS:
        return "timings"
    return key if key in TrialRecord.model_fields and key != "extra" else "extra"


# ---- save and load ----------------------------------------------------------------------------
class AttrWriter(Protocol):
    """Where a record can be saved: an optuna.Trial, or a `TrialAt`."""

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store one user attribute of the trial."""


@dataclass(frozen=True)
class TrialAt:
    """A trial addressed by storage and trial id, for writing outside `study.optimize`."""

    storage: Any  # optuna.storages.BaseStorage
    trial_id: int

    def set_user_attr(self, key: str, value: Any) -> None:
        """Store one user attribute of the trial, straight in the storage."""
        self.storage.set_trial_user_attr(self.trial_id, key, value)


def save(trial: AttrWriter, record: TrialRecord) -> None:
    """Write the fields `record` sets as user attributes of a running trial (an optuna.Trial,
    or a `TrialAt`); fields it leaves unset keep what the trial stored before.
    """
    for key, value in to_attrs(record).items():
        trial.set_user_attr(key, value)


def load(trial: Any, fields: Collection[str] | None = None) -> TrialRecord:
    """The record of a trial (a FrozenTrial, an optuna.Trial, anything with `user_attrs`);
    only the named record fields when `fields` is given, the others left at their defaults.
    """
    return from_attrs(trial.user_attrs, fields)


def failure_of(trial: Any) -> FailureKind | None:
    """Only the failure class of a trial: views that poll every trial each second (progress,
    ranking) need no more.
    """
    return load(trial, ("failure",)).failure

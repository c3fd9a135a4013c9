"""Finished Optuna trial → what its W&B run shows (pure data, no wandb import).

Kept apart from the upload so the mapping (run id, config, per-epoch history, summary, tags) is
plain, testable and identical on every machine. What a trial stored is read as its
`sweep.record.TrialRecord`. A run's summary shows the best epoch's values, the checkpoint that
was kept, not the last epoch's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sweep.record import TrialRecord, load

MIRRORED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}
# User attributes that describe the mirror itself, not the trial: never part of the hash.
_OWN_ATTRS = frozenset({"wandb_run"})
# EpochRecord.as_dict() keys with a fixed W&B name; every other numeric key is a val metric.
_HISTORY_NAMES = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "seconds": "epoch/seconds",
    "images_per_s": "epoch/images_per_s",
}


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit] or "study"


def trial_run_id(study_name: str, salt: str, trial_number: int) -> str:
    """Stable W&B run id: readable study slug + the study's salt + trial number (≤ 64 chars)."""
    return f"{_slug(study_name, 40)}-{salt}-t{trial_number}"


def study_run_id(study_name: str, salt: str) -> str:
    """The stable run id of the study's summary (trials table) run."""
    return f"{_slug(study_name, 40)}-{salt}-study"


def redact(text: str) -> str:
    """Remove the W&B API key from a message (an exception may echo request details)."""
    key = os.environ.get("WANDB_API_KEY", "")
    return text.replace(key, "***") if len(key) >= 8 else text


def content_hash(trial: FrozenTrial) -> str:
    """Hash of everything the run shows: a changed trial (e.g. a retried one) is re-mirrored."""
    data = {
        "state": trial.state.name,
        "values": trial.values,
        "params": trial.params,
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if k not in _OWN_ATTRS},
        "intermediate": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
    }
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class TrialPayload:
    """Everything one trial's W&B run holds, built from its Optuna record alone."""

    run_id: str
    name: str
    group: str
    config: dict[str, Any]
    history: list[tuple[int, dict[str, float]]]  # (step = epoch, metrics), steps increasing
    summary: dict[str, Any]
    tags: list[str]
    exit_code: int
    artifacts: dict[str, str] = field(default_factory=dict)  # name → optuna artifact id
    media_step: int | None = None  # the epoch whose model the overlay shows (the best one)
    # Summary keys W&B fills from the last history row that must not stay: a trial that
    # stopped early has no `objective` or `val/` headline (its best epoch is under `partial/`).
    summary_drop: tuple[str, ...] = ()


def history_rows(trial: FrozenTrial) -> list[tuple[int, dict[str, float]]]:
    """Per-epoch metrics from the trial's recorded history; else Optuna's intermediate values."""
    return _rows(trial, load(trial))


def _rows(trial: FrozenTrial, record: TrialRecord) -> list[tuple[int, dict[str, float]]]:
    rows: dict[int, dict[str, float]] = {}
    for entry in record.history:
        values = {}
        for key, value in entry.as_dict().items():
            if key != "epoch" and (num := _number(value)) is not None:
                values[_HISTORY_NAMES.get(key, f"val/{key}")] = num
        rows[entry.epoch] = values
    if not rows:
        for step, value in trial.intermediate_values.items():
            if (num := _number(value)) is not None:
                rows[int(step)] = {"objective": num}
    return sorted(rows.items())


def summary_step(record: TrialRecord, history: list[tuple[int, dict]]) -> int | None:
    """The epoch whose values the run's summary and media show: the trial's `best_epoch` (its
    checkpoint, overlay and metrics), else the last epoch run (a failed or pruned trial).
    """
    steps = [step for step, _ in history]
    if record.best_epoch in steps:
        return record.best_epoch
    return steps[-1] if steps else None


def _tags(record: TrialRecord, state: str) -> list[str]:
    tags = [state]
    if record.confirms is not None:
        tags.append(f"confirms:{record.confirms}")
    if record.failure is not None:
        tags.append(f"failure:{record.failure.value}")
    for part in ("model", "loss"):
        if name := record.config_part(part).get("name"):
            tags.append(f"{part}:{name}")
    return [t[:64] for t in tags]


def _summary(trial: FrozenTrial, record: TrialRecord, state: str, history: list) -> dict[str, Any]:
    summary: dict[str, Any] = {"state": state, "trial_number": trial.number, "epochs": len(history)}
    if trial.values is not None and trial.state == TrialState.COMPLETE:  # not a pruned one's
        summary["objective"] = trial.values[0] if len(trial.values) == 1 else list(trial.values)
    if record.failure is not None:
        summary["failure"] = record.failure.value
        summary["failure_message"] = redact(str(record.failure_message or ""))[:1000]
    recorded_values = {
        "best_epoch": record.best_epoch, "fit_seconds": record.timings.fit_seconds,
        "peak_memory_mb": record.peak_memory_mb, "images_per_s": record.timings.images_per_s,
        "subset_seed": record.subset_seed,
    }
    summary.update({k: v for k, v in recorded_values.items() if v is not None})
    recorded = {k: num for k, v in (record.metrics or {}).items()
                if (num := _number(v)) is not None}
    # The run's headline values ("val/iou", ...) are the best epoch's, as the study recorded
    # them: W&B would otherwise show the last epoch's, which is not the model that was kept.
    # Only a complete trial has them (and an `objective`): a pruned or failed trial's best
    # epoch goes under `partial/`, so a table sorted by `objective` or `val/<metric>` never
    # ranks a trial that stopped early above one that finished.
    step = summary_step(record, history)
    values = dict(dict(history)[step]) if step is not None else {}
    values.update({f"val/{k}": num for k, num in recorded.items()})
    values.update({f"best/{k}": num for k, num in recorded.items()})
    if trial.state != TrialState.COMPLETE:
        values = {f"partial/{k}": v for k, v in values.items() if not k.startswith("best/")}
    summary.update(values)
    if step is not None:
        summary["summary_epoch"] = step
    if trial.datetime_start and trial.datetime_complete:
        summary["duration_s"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return summary


def trial_payload(trial: FrozenTrial, study_name: str, salt: str) -> TrialPayload:
    """The W&B view of one finished trial."""
    record = load(trial)
    state = STATE_NAMES.get(trial.state, trial.state.name.lower())
    history = _rows(trial, record)
    config: dict[str, Any] = dict(trial.params)
    config["resolved"] = record.config or {}
    config["study"] = study_name
    config["trial_number"] = trial.number
    if record.subset_seed is not None:
        config["subset_seed"] = record.subset_seed
    # A config's runs share `config_group` (its search trial's number): W&B groups a search
    # trial with its confirmation runs by it ("Group by config_group").
    origin = record.confirms
    config["config_group"] = trial.number if origin is None else origin
    return TrialPayload(
        run_id=trial_run_id(study_name, salt, trial.number),
        name=f"{study_name}#{trial.number}" + ("" if origin is None else f" confirms #{origin}"),
        group=study_name,
        config=config,
        history=history,
        summary=_summary(trial, record, state, history),
        tags=_tags(record, state),
        exit_code=1 if trial.state == TrialState.FAIL else 0,
        artifacts=record.artifacts.by_name(),
        media_step=summary_step(record, history),
        summary_drop=() if trial.state == TrialState.COMPLETE else tuple(sorted(
            {k for _, row in history for k in row if k == "objective" or k.startswith("val/")}
        )),
    )


def trials_table_rows(trials: list[FrozenTrial], salt: str, study_name: str) -> tuple[list, list]:
    """Columns and rows of the study summary table: one row per finished trial."""
    records = [load(t) for t in trials]
    params = sorted({p for t in trials for p in t.params})
    metric_keys = sorted({k for r in records for k in (r.metrics or {})})
    best = [f"best/{k}" for k in metric_keys]
    columns = ["trial", "state", "failure", "objective", *params, *best, "run_id"]
    rows = []
    for t, record in zip(trials, records, strict=True):
        metrics = record.metrics or {}
        value = (t.values[0] if t.values and len(t.values) == 1
                 and t.state == TrialState.COMPLETE else None)
        state = STATE_NAMES.get(t.state, t.state.name.lower())
        failure = None if record.failure is None else record.failure.value
        rows.append(
            [t.number, state, failure, _number(value)]
            + [_cell(t.params.get(p)) for p in params]
            + [_number(metrics.get(k)) if t.state == TrialState.COMPLETE else None
               for k in metric_keys]
            + [trial_run_id(study_name, salt, t.number)]
        )
    return columns, rows


def _cell(value: Any) -> float | int | str | None:
    """A table cell: numbers stay numbers (for parallel coordinates), choices become text."""
    if value is None or _number(value) is not None:
        return value
    return str(value)

"""Which changes to a study's spec a resumed run (`sweep run` on a study that exists) accepts.

A study's finished trials are compared with each other and with the trials still to come, so
everything that decides what a trial is and what its value measures must stay as stored: the
search space, the fixed configuration, the metric, direction, threshold and seed, and the
per-trial budget (epochs, crop, train fraction, batches, validation patches). The rest only
steers how the study goes on and may change between runs: `description`, `data` (the same data
elsewhere), `synthesize_if_missing`, `sampler`, `pruner`, `budget.trial_timeout`, `execution`
and `confirm` (and the trial target, `--trials`, which is not part of the spec).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.errors import SpecError

MAY_CHANGE = ("description", "data", "synthesize_if_missing", "sampler", "pruner",
              "budget.trial_timeout", "execution", "confirm")
SHOWN = 4  # differences named in the message; the rest are counted


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _may_change(field: str) -> bool:
    return any(field == allowed or field.startswith(allowed + ".") for allowed in MAY_CHANGE)


def spec_conflicts(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The fields (dotted) whose stored and new values differ and may not change, each as
    `field: stored -> new`; empty when the new spec can resume the study.
    """
    old, now = _flatten(dict(stored)), _flatten(dict(new))
    missing = object()
    out = []
    for field in sorted(set(old) | set(now)):
        a, b = old.get(field, missing), now.get(field, missing)
        if a == b or _may_change(field):
            continue
        if a in (None, {}) and b is missing or b in (None, {}) and a is missing:
            continue  # an empty section and an absent one are the same
        shown_a = "(absent)" if a is missing else repr(a)
        shown_b = "(absent)" if b is missing else repr(b)
        out.append(f"{field}: {shown_a} -> {shown_b}")
    return out


def check_resumable(name: str, stored: Mapping[str, Any], new: Mapping[str, Any],
                    source: str) -> None:
    """Raise SpecError naming the differences when `new` may not resume study `name`."""
    conflicts = spec_conflicts(stored, new)
    if not conflicts:
        return
    more = len(conflicts) - SHOWN
    listed = "; ".join(conflicts[:SHOWN]) + (f"; and {more} more" if more > 0 else "")
    raise SpecError(
        f"{source}: study {name!r} exists with another spec ({listed}); a study keeps its "
        "space, fixed config, metric and budget (only sampler, pruner, execution, confirm, "
        "budget.trial_timeout, data, description may change): restore them, or give the "
        "changed spec another `name`"
    )

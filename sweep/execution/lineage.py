"""A trial's retry lineage, read from and written to Optuna system attributes.

Optuna's heartbeat retry (`RetryHeartbeatStaleTrialCallback`) queues a stale trial again with
the system attributes `failed_trial` (the first trial of the chain) and `retry_history`; the
sweep's retry after a kill (sweep.execution.target) writes the same two and `killed_retry_of`.
The objective reads `failed_trial` to give a retry its original's training subset.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Lineage(BaseModel):
    """Which trial a retry repeats, and which trials came before it."""

    model_config = ConfigDict(frozen=True)
    failed_trial: int | None = None
    retry_history: tuple[int, ...] = ()
    killed_retry_of: int | None = None

    def retry_of(self, number: int) -> dict[str, Any]:
        """The system attributes of a retry, after a kill, of trial `number` (this lineage)."""
        origin = number if self.failed_trial is None else self.failed_trial
        return {"failed_trial": origin, "retry_history": [*self.retry_history, number],
                "killed_retry_of": number}


def lineage(trial: Any) -> Lineage:
    """A trial's retry lineage from its system attributes (what does not fit is left out)."""
    fields = {}
    for key in Lineage.model_fields:
        with contextlib.suppress(KeyError, ValidationError):
            fields[key] = getattr(Lineage.model_validate({key: trial.system_attrs[key]}), key)
    return Lineage(**fields)

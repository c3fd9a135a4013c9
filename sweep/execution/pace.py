"""What the live view adds to the counts: how long the run has taken, how fast trials finish
and when the target will be met (from the trials' own durations), and one line per finished
trial that `sweep run` prints above the live table, so the scrollback keeps the whole run.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sweep.record import failure_of, load

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

ENDED = ("COMPLETE", "PRUNED", "FAIL")


def duration_s(trial: FrozenTrial) -> float | None:
    """Wall seconds from the trial's start to its end (None while it runs)."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def clock(seconds: float) -> str:
    """`1h02m`, `4m05s` or `12s`."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def pace_text(
    trials: Iterable[FrozenTrial], started: dt.datetime, now: dt.datetime, remaining: int,
    running: int,
) -> str:
    """`elapsed 4m05s · 14.7 trials/h · ETA 21m30s`: trials/h over the trials this run saw
    finish (since `started`); the ETA is `remaining` trials at the mean duration of the
    finished search trials, `running` at a time (at least one).
    """
    elapsed = (now - started).total_seconds()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    durations = [d for t in finished if load(t, ("confirms",)).confirms is None
                 and (d := duration_s(t)) is not None]
    recent = sum(1 for t in finished if t.datetime_complete and t.datetime_complete >= started)
    parts = [f"elapsed {clock(elapsed)}"]
    if recent and elapsed > 0:
        parts.append(f"{recent * 3600 / elapsed:.1f} trials/h")
    if remaining <= 0:
        parts.append("target met")
    elif durations:
        eta = remaining * statistics.fmean(durations) / max(1, running)
        parts.append(f"ETA {clock(eta)}")
    else:
        parts.append("ETA after the first finished trial")
    return " · ".join(parts)


def finished_line(trial: FrozenTrial, epochs: int) -> str:
    """One finished trial for the scrollback: number, state, value, epochs run, duration,
    params; a confirmation run says which config it confirms, a failure its kind.
    """
    record = load(trial, ("confirms", "failure", "failure_message"))
    kind = failure_of(trial)
    state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[trial.state.name]
    if kind is not None:
        state = f"failed ({kind.value})"
    what = (f"confirmation of #{record.confirms}" if record.confirms is not None else "trial")
    steps = trial.intermediate_values
    parts = [f"{what} {trial.number} {state}"]
    if trial.state.name == "COMPLETE" and kind is None and trial.value is not None:
        parts.append(f"value {trial.value:.4f}")
    elif steps:
        parts.append(f"last {steps[max(steps)]:.4f}")
    if steps:
        parts.append(f"epoch {max(steps)}/{epochs}")
    if (seconds := duration_s(trial)) is not None:
        parts.append(f"in {clock(seconds)}")
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.params.items())
    line = " · ".join(parts) + (f" · {params}" if params else "")
    if kind is not None and record.failure_message:
        line += f" · {str(record.failure_message).splitlines()[0][:120]}"
    return line

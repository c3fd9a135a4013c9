"""A run that cannot succeed stops itself: after `execution.max_consecutive_failures` trials in a
row fail the same way, the study is marked halted and every worker stops taking trials (W&B's
agent has `--max-consecutive-failed-runs` for the same reason). A broken install, a data tree
every trial rejects or a spec no model can train would otherwise fail trial after trial for as
long as the run is allowed to go on.

The streak is read from the storage, so it is study-wide: with many workers the study stops
after N failures, not N per worker. Trials count in the order they ended. A trial that ends
cleanly (complete or pruned) breaks the streak; a failure of another kind starts a new one;
trials ended by Ctrl-C, beyond the target or as duplicate confirmations are not failures of the
run and do not count. Running the study again (`sweep run`, or `sweep worker --resume`) is the
user's decision to try again: it clears the mark, and the streak counts from the next trial on.
A plain `sweep worker` does not: workers of a scheduler's job array start at any time, and a
late one must not restart a study the others stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from sweep.errors import WorkerError
from sweep.record import FailureKind, load

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

HALT_ATTR = "halted"  # study user attr: the Halt that stopped the study, or None
STREAK_FROM_ATTR = "failure_streak_from"  # study user attr: the first trial number that counts
# Not failures of the run: the user stopped it, or the trial never trained by design.
NOT_COUNTED = frozenset({FailureKind.INTERRUPTED, FailureKind.SURPLUS, FailureKind.DUPLICATE})


class Halt(BaseModel):
    """Why a study stopped: `count` trials in a row failed as `kind`; the first of them."""

    model_config = ConfigDict(frozen=True)
    kind: FailureKind
    count: int
    first_trial: int
    first_message: str
    traceback: str | None = None  # where the first failure's traceback is kept

    def line(self, study: str) -> str:
        """The one line `sweep run` and `sweep worker` end with."""
        kept = f"; its traceback: {self.traceback}" if self.traceback else ""
        return (f"study {study!r} stopped after {self.count} consecutive failed trials "
                f"({self.kind.value}); the first, trial {self.first_trial}: "
                f"{self.first_message}{kept}. Fix the cause, then rerun `sweep run` (or "
                "start workers with `sweep worker --resume`) to go on")


class RunHalted(WorkerError):
    """The study stopped taking trials: its trials kept failing the same way."""

    exit_code = 3  # not 2: the input may be fine; the run could not succeed

    def __init__(self, study: str, halt: Halt) -> None:
        self.halt = halt
        super().__init__(halt.line(study))


class RunFailed(WorkerError):
    """The run ended with failed trials and none finished."""

    exit_code = 3


def stored_halt(study: optuna.Study) -> Halt | None:
    """The mark a worker left on the study, if any."""
    raw = study.user_attrs.get(HALT_ATTR)
    if not raw:
        return None
    try:
        return Halt.model_validate(raw)
    except ValidationError:
        return None


def failure_streak(trials: Iterable[FrozenTrial], since: int = 0) -> list[FrozenTrial]:
    """The trials numbered from `since` that ended last, in the order they ended, if they all
    failed the same way (the streak); empty when the latest counted trial ended cleanly.
    """
    from optuna.trial import TrialState

    ended = [t for t in trials if t.number >= since and t.datetime_complete is not None
             and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    ended.sort(key=lambda t: (t.datetime_complete, t.number))
    streak: list[FrozenTrial] = []
    kind: FailureKind | None = None
    for trial in reversed(ended):
        failure = load(trial, ("failure",)).failure
        if failure in NOT_COUNTED or (failure is None and trial.state == TrialState.FAIL):
            continue  # not the run's failure (Ctrl-C, surplus; a stale worker's trial)
        if failure is None or (kind is not None and failure != kind):
            break  # a clean end, or the streak of another kind ends here
        kind = failure
        streak.append(trial)
    return streak[::-1]


def check_halt(study: optuna.Study, limit: int | None,
               artifact_dir: str | Path | None = None) -> Halt | None:
    """The study's halt: the stored mark, else a new one once the streak reaches `limit`
    (written to the study, so every worker sees it). `artifact_dir`: where the trials'
    artifacts (a failed trial's traceback among them) are kept.
    """
    if (halt := stored_halt(study)) is not None:
        return halt
    if limit is None:
        return None
    since = int(study.user_attrs.get(STREAK_FROM_ATTR) or 0)
    streak = failure_streak(study.get_trials(deepcopy=False), since)
    if len(streak) < limit:
        return None
    first = streak[0]
    record = load(first, ("failure", "failure_message", "artifacts"))
    kept = record.artifacts.traceback
    halt = Halt(
        kind=record.failure or FailureKind.UNKNOWN, count=len(streak), first_trial=first.number,
        first_message=record.failure_message or "(no message)",
        traceback=None if kept is None or artifact_dir is None else str(Path(artifact_dir) / kept),
    )
    study.set_user_attr(HALT_ATTR, halt.model_dump(mode="json"))
    return halt


def clear_halt(study: optuna.Study) -> None:
    """A new start: no halt, and the streak counts from the next trial on."""
    if study.user_attrs.get(HALT_ATTR) is None:
        return
    study.set_user_attr(STREAK_FROM_ATTR, len(study.get_trials(deepcopy=False)))
    study.set_user_attr(HALT_ATTR, None)

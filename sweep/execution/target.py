"""The study-wide trial target, exact for any number of workers on any number of machines, and
workers that ride out a storage outage.

Optuna's MaxTrialsCallback stops a worker after its trial once enough trials are finished; by
then the other K-1 workers may each have started one more, so a study overshoots (measured: 8
finished for a target of 6 with 3 workers). Exactness needs an order all workers agree on, and
the storage gives one: trial numbers. Trial n may train only while fewer than `target` trials
numbered below n are finished, running or waiting; otherwise it is surplus and ends at once,
FAILED with failure "surplus" and no training (rare: only when two workers start in the same
instant). A worker does not leave while other workers' trials hold the remaining slots: one of
them may die, and its retry (Optuna's stale-trial callback) needs a worker to run it.

A lost database connection (server restart, network) fails the trial's bookkeeping, not the
worker: the worker waits for the storage to answer again, for up to `OUTAGE_S`, and goes on;
the trial it was running is failed by heartbeat after the grace period and retried. After
`OUTAGE_S` the worker exits with one line naming the (redacted) storage.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sweep.errors import StorageError
from sweep.execution.confirm import (
    Duplicate,
    check_not_duplicate,
    confirms,
    enqueue_confirmations,
    pending,
    search_trials,
)
from sweep.execution.halt import RunHalted, check_halt, stored_halt
from sweep.execution.lineage import lineage
from sweep.execution.settle import check_settled, probe
from sweep.record import FailureKind, TrialRecord, failure_of, load, save, to_attrs

if TYPE_CHECKING:
    import threading

    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from sweep.study.spec import Confirm, StopSearch

FINISHED = ("COMPLETE", "PRUNED")
HOLDING = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # states that take a slot
OUTAGE_S = 300.0


class Surplus(Exception):
    """This trial would exceed the study-wide target: end it before any training."""


class StorageLost(StorageError):
    """The storage stayed unreachable for OUTAGE_S seconds (message redacted, one line)."""


def _states(names: Sequence[str]) -> tuple[TrialState, ...]:
    from optuna.trial import TrialState

    return tuple(TrialState[n] for n in names)


def slots_taken_before(study: optuna.Study, number: int) -> int:
    """Search trials numbered before `number` holding a slot of the target (finished, running,
    waiting); confirmation runs hold none.
    """
    trials = search_trials(study.get_trials(deepcopy=False, states=_states(HOLDING)))
    return sum(t.number < number for t in trials)


class TargetedObjective:
    """Wraps an objective: a trial beyond the target ends as surplus before it trains."""

    def __init__(self, objective: Callable[[Any], float], target: int,
                 stop_rule: StopSearch | None = None) -> None:
        self.objective, self.target, self.stop_rule = objective, target, stop_rule

    def __call__(self, trial: optuna.Trial) -> float:
        """The objective's value, or a surplus failure once the target's slots are taken
        (confirmation runs are outside the target, and a duplicate one ends at once).
        """
        if confirms(trial) is not None:  # a confirmation run: outside the target, never twice
            try:
                check_not_duplicate(trial)
            except Duplicate as dup:
                save(trial, TrialRecord(failure=FailureKind.DUPLICATE, failure_message=str(dup)))
                raise
            return self.objective(trial)
        stopped = check_settled(trial.study, self.stop_rule)
        if stopped is not None or slots_taken_before(trial.study, trial.number) >= self.target:
            why = (stopped.line() if stopped is not None
                   else f"target of {self.target} trials reached")
            save(trial, TrialRecord(failure=FailureKind.SURPLUS, failure_message=why))
            trial.study.stop()
            raise Surplus(f"trial {trial.number} is beyond the search: {why}")
        return self.objective(trial)


def _between_trials(target: int, confirm: Confirm | None, stop_rule: StopSearch | None
                    ) -> Callable[[optuna.Study, FrozenTrial], None]:
    """After each trial: queue the settle rule's probe when due, and stop taking trials once
    the target's slots are taken or the search is settled.
    """
    def callback(study: optuna.Study, _trial: FrozenTrial) -> None:
        if stop_rule is not None and confirm is not None:
            probe(study, stop_rule, confirm)
        held = len(search_trials(study.get_trials(deepcopy=False, states=_states(HOLDING))))
        if held >= target or check_settled(study, stop_rule) is not None:
            study.stop()

    return callback


def retry_killed(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a trial whose process was killed by a signal (failure "killed", e.g. the
    out-of-memory killer) once more with the same params and training subset, as Optuna's
    stale-trial retry does: a kill can come from outside (another job's memory), so one kill
    does not yet condemn the params; a retry killed again stays failed.
    """
    import optuna
    from optuna.trial import TrialState

    if trial.state != TrialState.FAIL or failure_of(trial) != FailureKind.KILLED:
        return
    line = lineage(trial)
    if line.killed_retry_of is not None:
        return
    same = load(trial, ("confirms", "confirm_repeat"))  # a confirmation's retry is the same one
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=to_attrs(same),
        system_attrs=line.retry_of(trial.number),
    ))


def _stop_when_halted(limit: int | None, artifact_dir: str | None
                      ) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Stop taking trials once the study is halted (by this worker's streak or another's)."""
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        failed = failure_of(trial) is not None
        halt = check_halt(study, limit, artifact_dir) if failed else stored_halt(study)
        if halt is not None:
            study.stop()

    return callback


def is_storage_outage(err: BaseException) -> bool:
    """A lost connection, seen directly or through Optuna's bookkeeping (its `_run_trial`
    raises UnboundLocalError when the database vanished while telling a trial), or the
    aftermath: our trial was failed as stale by another worker while we could not heart-beat.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from sweep.sqlite_file import is_disk_full

    seen: BaseException | None = err
    while seen is not None:
        if is_disk_full(seen):  # "database or disk is full": no wait will free the disk
            return False
        if isinstance(seen, OperationalError | InterfaceError | UpdateFinishedTrialError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _taken_over(err: BaseException) -> bool:
    """Optuna's tell of a trial that another worker failed as stale meanwhile (this worker was
    frozen, SIGSTOP, past the grace period): "Cannot tell a FAIL trial", under the
    AssertionError that Optuna's own clean-up then raises.
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ValueError) and str(seen).startswith("Cannot tell a "):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _quiet_heartbeat_errors(log: Callable[[str], None]) -> None:
    """Optuna's heartbeat thread dies on a lost connection with a traceback: say it in a line."""
    import threading

    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and is_storage_outage(args.exc_value):
            log("heartbeat lost its storage connection; the trial will be retried if stale")
        else:
            default(args)

    threading.excepthook = hook


def _next_step(study: optuna.Study, target: int, confirm: Confirm | None,
               stop_rule: StopSearch | None) -> str:
    """"run" a trial, "wait" (others hold the remaining slots, or the race's runs) or "done":
    the search has `target` finished trials (or was stopped as settled: sweep.execution.settle)
    and, with `confirm`, the race of its top configs is settled (sweep.execution.racing).
    """
    trials = search_trials(study.get_trials(deepcopy=False, states=_states(HOLDING)))
    done = sum(t.state.name in FINISHED for t in trials)
    waiting = sum(t.state.name == "WAITING" for t in trials)
    if done >= target or check_settled(study, stop_rule) is not None:
        if confirm is None:
            return "done"
        enqueue_confirmations(study, confirm.settings())  # the race's next round, if due
        waiting, running = pending(study)
        if waiting:
            return "run"
        return "wait" if running else "done"
    if stop_rule is not None and confirm is not None:
        probe(study, stop_rule, confirm)  # the leader's first round: the noise the rule needs
    if pending(study)[0]:
        return "run"
    return "wait" if len(trials) >= target and not waiting else "run"


def run_to_target(
    study: optuna.Study,
    objective: Callable[[Any], float],
    target: int,
    *,
    poll_s: float,
    shown_storage: str,
    timeout: float | None = None,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callable] = (),
    log: Callable[[str], None] = print,
    confirm: Confirm | None = None,
    stop_rule: StopSearch | None = None,
    halt_after: int | None = None,
    artifact_dir: str | None = None,
) -> None:
    """Run trials until `target` are finished study-wide, exactly; see the module docstring.
    With `confirm` (a spec's section), then race the top configs (sweep.execution.confirm) with
    the other workers until the race is settled; `stop_rule` may end the search early. Raises
    RunHalted once `halt_after` trials in a row failed the same way (sweep.execution.halt;
    `artifact_dir` holds their tracebacks).
    """
    import optuna

    deadline = None if timeout is None else time.monotonic() + timeout
    wrapped = TargetedObjective(objective, target, stop_rule)
    _quiet_heartbeat_errors(log)
    lost_since: float | None = None
    while deadline is None or time.monotonic() < deadline:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            if (halt := check_halt(study, halt_after, artifact_dir)) is not None:
                raise RunHalted(study.study_name, halt)
            step = _next_step(study, target, confirm, stop_rule)
            lost_since = None
            if step == "done":
                return
            if step == "wait":  # others hold every slot; stay in case one of them dies
                time.sleep(poll_s)
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            study.optimize(
                wrapped, timeout=left, catch=(*catch, Surplus, Duplicate), gc_after_trial=False,
                callbacks=[retry_killed, _between_trials(target, confirm, stop_rule),
                           _stop_when_halted(halt_after, artifact_dir), *callbacks],
            )
        except Exception as err:
            if _taken_over(err):
                log("this worker was stopped past the heartbeat grace period and its trial was "
                    "failed as stale (and retried) by another worker; going on")
                continue
            if not is_storage_outage(err):
                raise
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                log(f"storage {shown_storage} unreachable ({type(err).__name__}); retrying for up "
                    f"to {OUTAGE_S:.0f}s; an interrupted trial is failed and retried")
            if now - lost_since > OUTAGE_S:
                raise StorageLost(
                    f"storage {shown_storage} unreachable for {OUTAGE_S:.0f}s; stopping this "
                    "worker (its running trial is retried by the others after the grace period)"
                ) from None
            time.sleep(poll_s)

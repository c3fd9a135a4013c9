"""Live view of a running study, read from the storage (so it sees every worker, local or not):
finished/target, running trials with their epoch and last IoU, best so far, pruned and failed,
elapsed time, trials/hour and an ETA (sweep.execution.pace), and a line per finished trial
printed above the live table, which stays in the terminal's scrollback.
"""

from __future__ import annotations

import datetime as dt
import threading
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sweep.record import failure_of, load

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from sweep.ranking import ConfigRuns


def snapshot(study: optuna.Study) -> dict[str, Any]:
    """Counts, best and running trials of a study, from one read of its trials."""
    from optuna.trial import TrialState

    from sweep.execution.confirm import search_trials

    trials = study.get_trials(deepcopy=False)
    search = search_trials(trials)  # what the target counts; confirmations come after it
    failures: dict[str, int] = {}
    latest: dict[str, FrozenTrial] = {}  # kind → the trial of that kind that ended last
    done = []  # COMPLETE without a failure class (an OOM trial carries a worst value)
    for t in trials:
        kind = failure_of(t)
        if kind is not None:
            failures[kind.value] = failures.get(kind.value, 0) + 1
            if _ended_after(t, latest.get(kind.value)):
                latest[kind.value] = t
        elif t.state == TrialState.COMPLETE:
            done.append(t)
    best = None
    if done:
        pick = max if study.direction.name == "MAXIMIZE" else min
        best = pick(done, key=attrgetter("value"))
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in search),
        "pruned": sum(t.state == TrialState.PRUNED for t in search),
        "confirmations": sum(t.state == TrialState.COMPLETE for t in trials) - sum(
            t.state == TrialState.COMPLETE for t in search),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "failures": failures,
        "latest_failure": {k: (t.number, load(t, ("failure_message",)).failure_message or "")
                           for k, t in latest.items()},
        "best": best,
        "confirmed": _confirmed_leader(trials, study.direction.name == "MAXIMIZE"),
        "running": [t for t in trials if t.state == TrialState.RUNNING],
        "trials": trials,
    }


def _confirmed_leader(trials: list[FrozenTrial], maximize: bool) -> ConfigRuns | None:
    """The config ranked first by its confirmation runs, once there is one."""
    from sweep.ranking import rank_trials

    ranked = rank_trials(trials, maximize)
    return ranked[0] if ranked and ranked[0].confirmed else None


def headline_best(snap: dict[str, Any]) -> str:
    """The best figure a headline shows: the confirmed leader once there is one (the mean of
    its confirmation runs), else the best single run.
    """
    leader, best = snap.get("confirmed"), snap["best"]
    if leader is not None:
        single = "" if best is None else f"; best single run {best.value:.4f} (trial {best.number})"
        return f"{leader.describe()} confirmed, config of trial {leader.origin.number}{single}"
    return "—" if best is None else f"{best.value:.4f} (trial {best.number}, a single run)"


def _ended_after(trial: FrozenTrial, other: FrozenTrial | None) -> bool:
    def key(t: FrozenTrial) -> tuple[dt.datetime, int]:
        return (t.datetime_complete or t.datetime_start or dt.datetime.min, t.number)

    return other is None or key(trial) > key(other)


def render(name: str, snap: dict[str, Any], target: int, epochs: int,
           started: dt.datetime | None = None) -> Group:
    """The live view's lines and running-trials table for one `snapshot`; with `started`
    (when the view began, naive local time as Optuna's), a line of elapsed time, pace and ETA.
    """
    from sweep.execution.pace import pace_text

    finished = snap["complete"] + snap["pruned"]
    fails = ", ".join(f"{k} {v}" for k, v in sorted(snap["failures"].items())) or "none"
    best_text = headline_best(snap)
    head = Text.assemble(
        (f"{name} ", "bold"),
        f"{finished}/{target} finished · {snap['pruned']} pruned · {snap['failed']} failed ",
        f"· {snap['confirmations']} confirmation runs " if snap["confirmations"] else "",
        f"({fails}) · best {best_text}",
    )
    lines: list[Any] = [head]
    if started is not None:
        lines.append(Text(pace_text(snap["trials"], started, dt.datetime.now(),
                                    target - finished, len(snap["running"])), style="dim"))
    if not snap["running"]:
        return Group(*lines)
    table = Table(box=None, pad_edge=False)
    for col in ("trial", "epoch", "IoU", "params"):
        table.add_column(col)
    for t in snap["running"]:
        steps = t.intermediate_values
        epoch = max(steps) if steps else 0
        iou = f"{steps[epoch]:.4f}" if steps else "—"
        params = ", ".join(f"{_label(k)}={_short(v)}" for k, v in t.params.items())
        what = str(t.number)
        if (origin := load(t, ("confirms",)).confirms) is not None:
            what += f" (confirms #{origin})"
        table.add_row(what, f"{epoch}/{epochs}", iou, params)
    return Group(*lines, table)


def _label(path: str) -> str:
    section, _, field = path.partition(".")
    return section if field == "name" else field


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class LiveView:
    """Polls the storage once a second and redraws; `stop()` ends it (from any thread)."""

    def __init__(self, study_name: str, storage_url: str, target: int, epochs: int) -> None:
        self.study_name, self.storage_url = study_name, storage_url
        self.target, self.epochs = target, epochs
        self._stop = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        """Redraw once a second until `stop()` (blocking: run it in a thread)."""
        import optuna
        from rich.live import Live

        from sweep.execution.pace import ENDED, finished_line
        from sweep.storage import open_storage

        started = dt.datetime.now()
        try:
            study = optuna.load_study(
                study_name=self.study_name, storage=open_storage(self.storage_url)
            )
            # Trials that ended before this run are not logged again (a resumed study).
            seen = {t.number for t in study.get_trials(deepcopy=False)
                    if t.state.name in ENDED}
            with Live(refresh_per_second=2, transient=False) as live:
                while True:
                    snap = snapshot(study)
                    for t in sorted(snap["trials"], key=attrgetter("number")):
                        if t.state.name in ENDED and t.number not in seen:
                            seen.add(t.number)
                            live.console.print(finished_line(t, self.epochs),
                                               highlight=False, markup=False)
                    live.update(render(self.study_name, snap, self.target, self.epochs,
                                       started))
                    if self._stop.is_set():
                        break
                    self._stop.wait(1.0)  # one more pass after stop(): the last trials' lines
            live.console.print()  # the summary line starts on a line of its own
        finally:
            self._done.set()

    def stop(self) -> None:
        """End `run` and wait (up to 5 s) for its last redraw."""
        self._stop.set()
        self._done.wait(5)

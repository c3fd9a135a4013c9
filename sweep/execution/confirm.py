"""Confirmation runs: retrain the study's top configs, in racing rounds (sweep.execution.racing).

A study trains each config once, on one random 50 % subset, and the best of those single draws
is partly luck. Once the search is done, the `top` best configs race: each round queues
`repeats` more runs of every config still in the race with the same params (Optuna's
`enqueue_trial`): ordinary trials any worker picks up, each redrawing every random choice a user
would meet (training subset, initialisation, crops and flips all follow the trial number), never
pruned and not counted toward the target. A confirmation carries the user attributes
`confirms` (the number of the trial it confirms) and `confirm_repeat` (1..repeats).

Exactly once with many workers, without a lock: every worker may enqueue (each enqueues only
the (origin, repeat) pairs it does not see), and when two raced, the lower-numbered copy is the
confirmation; the other ends at once as "duplicate", before it trains. A confirmation whose
worker died is retried like any trial and keeps its attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sweep.execution.racing import RaceSettings, RaceState, race
from sweep.record import FailureKind, TrialRecord, failure_of, load, to_attrs

HOLDING = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # states that hold a (origin, repeat)


class Duplicate(Exception):
    """Another trial already holds this (origin, repeat): end before any training."""


def confirms(trial: Any) -> int | None:
    """The number of the trial `trial` confirms, or None for a search trial."""
    return load(trial, ("confirms",)).confirms


def _repeat(trial: Any) -> int:
    return load(trial, ("confirm_repeat",)).confirm_repeat or 0


def search_trials(trials: Iterable[Any]) -> list[Any]:
    """The trials the sampler proposed (what --trials counts): confirmations left out."""
    return [t for t in trials if confirms(t) is None]


def top_trials(study: Any, top: int) -> list[Any]:
    """The `top` best complete search trials with distinct params (a trial that failed into a
    worst value, e.g. out of memory, is not a candidate).
    """
    from optuna.trial import TrialState

    done = search_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    done = [t for t in done if t.value is not None and failure_of(t) is None]
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    chosen, seen = [], set()
    for t in sorted(done, key=lambda t: (sign * t.value, t.number)):
        key = repr(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append(t)
    return chosen[:top]


def _held(study: Any, states: tuple[str, ...] = HOLDING) -> dict[tuple[int, int], list[int]]:
    """(origin, repeat) → numbers of the confirmation trials in `states`, lowest first."""
    from optuna.trial import TrialState

    wanted = tuple(TrialState[s] for s in states)
    held: dict[tuple[int, int], list[int]] = {}
    for t in study.get_trials(deepcopy=False, states=wanted):
        if (origin := confirms(t)) is not None:
            held.setdefault((origin, _repeat(t)), []).append(t.number)
    return {k: sorted(v) for k, v in held.items()}


def race_state(study: Any, settings: RaceSettings) -> RaceState:
    """The race of the study's top configs, from the confirmation runs stored so far. A run
    counts toward its config's budget once it ended (complete or failed) with no retry of it
    waiting or running; its value counts when it completed cleanly.
    """
    from optuna.trial import TrialState

    contenders = [t.number for t in top_trials(study, settings.top)]
    ended: dict[int, set[int]] = {c: set() for c in contenders}
    busy: dict[int, set[int]] = {c: set() for c in contenders}
    values: dict[int, dict[int, float]] = {c: {} for c in contenders}
    for t in study.get_trials(deepcopy=False):
        origin = confirms(t)
        if origin not in ended or failure_of(t) == FailureKind.DUPLICATE:
            continue
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            busy[origin].add(_repeat(t))
            continue
        ended[origin].add(_repeat(t))
        if t.state == TrialState.COMPLETE and failure_of(t) is None and t.value is not None:
            values[origin][_repeat(t)] = float(t.value)
    attempts = {c: len(ended[c] - busy[c]) for c in contenders}
    ordered = {c: [v for _, v in sorted(vs.items())] for c, vs in values.items()}
    return race(contenders, ordered, attempts, settings,
                maximize=study.direction.name == "MAXIMIZE")


def _missing(study: Any, settings: RaceSettings) -> list[tuple[Any, int]]:
    """(origin trial, repeat) pairs the race wants and that were never queued. A failed
    confirmation counts as queued: it is retried like any trial (stale worker, killed) or stays
    failed (and counts toward its config's budget), never queued again.
    """
    state = race_state(study, settings)
    by_number = {t.number: t for t in top_trials(study, settings.top)}
    ever = _held(study, (*HOLDING, "FAIL"))
    return [(by_number[origin], repeat) for origin, wanted in state.wanted.items()
            for repeat in range(1, wanted + 1) if (origin, repeat) not in ever]


def enqueue_confirmations(study: Any, settings: RaceSettings) -> int:
    """Queue the confirmation runs the race wants now and that are not queued yet; returns how
    many were queued (0 while a round is running, or once the race is settled).
    """
    missing = _missing(study, settings)
    for origin, repeat in missing:
        marks = TrialRecord(confirms=origin.number, confirm_repeat=repeat)
        study.enqueue_trial(origin.params, user_attrs=to_attrs(marks))
    return len(missing)


def confirmations_done(study: Any, settings: RaceSettings) -> bool:
    """The race is settled and no confirmation is waiting or running."""
    return race_state(study, settings).settled and pending(study) == (0, 0)


def check_not_duplicate(trial: Any) -> None:
    """Raise Duplicate when a lower-numbered trial holds this confirmation's (origin, repeat)."""
    origin = confirms(trial)
    if origin is None:
        return
    key = (origin, _repeat(trial))
    holders = _held(trial.study).get(key, [])
    if holders and holders[0] < trial.number:
        raise Duplicate(f"trial {trial.number} repeats confirmation {key} of trial "
                        f"{holders[0]}")


def pending(study: Any) -> tuple[int, int]:
    """(waiting, running) confirmation trials."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    waiting = sum(t.state == TrialState.WAITING for t in trials if confirms(t) is not None)
    running = sum(t.state == TrialState.RUNNING for t in trials if confirms(t) is not None)
    return waiting, running

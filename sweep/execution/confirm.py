"""Confirmation runs: retrain the study's top configs on fresh training subsets.

A study trains each config once, on one random 50 % subset, and the best of those single draws
is partly luck. Once the study's target is reached, each of the `top` best configs is queued
`repeats` more times with the same params (Optuna's `enqueue_trial`): ordinary trials any
worker picks up, each drawing a fresh subset (the subset seed follows the trial number), never
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

from sweep.record import TrialRecord, failure_of, load, to_attrs

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


def _missing(study: Any, top: int, repeats: int) -> list[tuple[Any, int]]:
    """(origin trial, repeat) pairs never queued. A failed confirmation counts as queued: it is
    retried like any trial (stale worker, killed) or stays failed, never queued again.
    """
    ever = _held(study, (*HOLDING, "FAIL"))
    return [(origin, repeat) for origin in top_trials(study, top)
            for repeat in range(1, repeats + 1) if (origin.number, repeat) not in ever]


def enqueue_confirmations(study: Any, top: int, repeats: int) -> int:
    """Queue what is missing of `repeats` confirmations for each of the `top` trials; returns
    how many were queued (0 when all are queued or done).
    """
    missing = _missing(study, top, repeats)
    for origin, repeat in missing:
        marks = TrialRecord(confirms=origin.number, confirm_repeat=repeat)
        study.enqueue_trial(origin.params, user_attrs=to_attrs(marks))
    return len(missing)


def confirmations_done(study: Any, top: int, repeats: int) -> bool:
    """Every confirmation queued and none waiting or running."""
    return not _missing(study, top, repeats) and pending(study) == (0, 0)


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

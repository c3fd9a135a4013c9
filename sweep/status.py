"""Read-only views of a storage for `sweep status` and `sweep best`: no torch, nothing created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudseg import ConfigError

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterable

    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

RECENT_S = 600.0  # a worker that finished a trial in the last ten minutes counts as seen


def study_names(storage: str | BaseStorage) -> list[str]:
    """Names of every study in the storage."""
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load(storage: str | BaseStorage, name: str) -> optuna.Study:
    """The study `name`; a missing one is a ConfigError listing those the storage has."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        listed = ", ".join(study_names(storage)) or "none"
        raise ConfigError(f"no study {name!r} in this storage; available: {listed}") from None


def latest_study(storage: str | BaseStorage) -> str:
    """The study most recently started by `sweep run` (its `last_run` attr)."""
    import optuna

    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        raise ConfigError("the storage holds no study yet; run `sweep run --study NAME` first")

    def key(s: optuna.study.StudySummary) -> str:
        return str(s.user_attrs.get("last_run") or s.datetime_start or "")

    return max(summaries, key=key).study_name


def heartbeat_ages(storage: BaseStorage, study: optuna.Study) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat, measured by the database clock.

    Raw SQL on Optuna's `trial_heartbeats` table: Optuna has no public read of heartbeat times
    (its heartbeat API records them and fails stale trials, nothing more). One of the documented
    exceptions to "Optuna's public API only" (see tests/test_optuna_api.py).
    """
    import sqlalchemy

    query = sqlalchemy.text(
        "SELECT t.number, h.heartbeat, CURRENT_TIMESTAMP FROM trial_heartbeats h "
        "JOIN trials t ON t.trial_id = h.trial_id "
        "WHERE t.study_id = :sid AND t.state = 'RUNNING'"
    )
    engine = getattr(storage, "engine", None)
    if engine is None:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(query, {"sid": storage.get_study_id_from_name(study.study_name)}).all()
    ages = {}
    for number, beat, now in rows:
        beat, now = _as_datetime(beat), _as_datetime(now)
        ages[int(number)] = (now.replace(tzinfo=None) - beat.replace(tzinfo=None)).total_seconds()
    return ages


def _as_datetime(value: Any) -> dt.datetime:
    import datetime as dt

    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def describe(storage: BaseStorage, study: optuna.Study) -> dict[str, Any]:
    """Counts by state and failure class, best, target, running trials with heartbeat age and
    the workers seen recently.
    """
    from sweep.execution.halt import stored_halt
    from sweep.execution.progress import headline_best, snapshot

    snap = snapshot(study)
    ages = heartbeat_ages(storage, study)
    return {
        "name": study.study_name,
        "target": study.user_attrs.get("target"),
        "last_run": study.user_attrs.get("last_run"),
        **{k: snap[k] for k in ("complete", "pruned", "failed", "waiting", "failures",
                                "latest_failure", "confirmations")},
        "halt": stored_halt(study),
        "best": None if snap["best"] is None else (snap["best"].number, snap["best"].value),
        "headline_best": headline_best(snap),
        "running": [
            (t.number, max(t.intermediate_values, default=0), ages.get(t.number))
            for t in snap["running"]
        ],
        "running_trials": snap["running"],
        "ages": ages,
        "workers": workers_seen(snap["trials"], ages),
    }


def workers_seen(
    trials: Iterable[FrozenTrial], ages: dict[int, float], recent_s: float = RECENT_S
) -> list[dict[str, Any]]:
    """Workers with a running trial, or one that finished within `recent_s` seconds (each
    trial records its worker, host:pid; the heartbeat says whether a running one is alive).
    """
    import datetime as dt

    from sweep.record import load

    now = dt.datetime.now()  # Optuna stamps trials with the naive local time
    rows: dict[str, dict[str, Any]] = {}
    for t in trials:
        name = load(t, ("worker",)).worker
        if not name:
            continue
        row = rows.setdefault(name, {"worker": name, "running": None, "heartbeat": None,
                                     "finished": 0, "last": None})
        if t.state.name == "RUNNING":
            row["running"], row["heartbeat"] = t.number, ages.get(t.number)
        elif t.state.name in ("COMPLETE", "PRUNED") and t.datetime_complete is not None:
            row["finished"] += 1
            row["last"] = max(filter(None, (row["last"], t.datetime_complete)))
    return [
        {**r, "last_s": None if r["last"] is None else (now - r["last"]).total_seconds()}
        for r in rows.values()
        if r["running"] is not None
        or (r["last"] is not None and (now - r["last"]).total_seconds() < recent_s)
    ]

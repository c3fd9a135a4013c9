"""Machine-readable `sweep status --json` and `sweep best --json`: plain JSON objects whose keys
are documented in the README and kept stable (new keys may be added; none is renamed or
dropped without a `format` bump). Values are JSON numbers, strings, lists or null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.ranking import Comparison, ConfigRuns

FORMAT = 1  # bumped when a key changes meaning or goes away


def status_json(d: dict[str, Any]) -> dict[str, Any]:
    """One study's `sweep.status.describe` as JSON (no Optuna objects)."""
    best = d["best"]
    return {
        "study": d["name"],
        "target": d["target"],
        "last_run": d["last_run"],
        "complete": d["complete"],
        "pruned": d["pruned"],
        "failed": d["failed"],
        "waiting": d["waiting"],
        "running": [{"trial": n, "epoch": epoch, "heartbeat_age_s": age}
                    for n, epoch, age in d["running"]],
        "confirmations": d.get("confirmations", 0),
        "failures": dict(sorted(d["failures"].items())),
        "latest_failure": {kind: {"trial": n, "message": message}
                           for kind, (n, message) in sorted(d["latest_failure"].items())},
        "halted": None if d.get("halt") is None else d["halt"].line(d["name"]),
        "best": None if best is None else {"trial": best[0], "value": best[1]},
        "workers": [{"worker": w["worker"], "running_trial": w["running"],
                     "heartbeat_age_s": w["heartbeat"], "finished": w["finished"],
                     "last_finished_age_s": w["last_s"]} for w in d["workers"]],
    }


def status_document(studies: list[dict[str, Any]]) -> dict[str, Any]:
    """`sweep status --json`: every study's status."""
    return {"format": FORMAT, "studies": [status_json(d) for d in studies]}


def best_document(
    name: str, metric: str, configs: list[ConfigRuns], comparison: Comparison | None
) -> dict[str, Any]:
    """`sweep best --json`: the ranked configs, best first, and #1 against #2."""
    rows = []
    for rank, c in enumerate(configs, 1):
        interval = c.interval()
        rows.append({
            "rank": rank, "trial": c.origin.number, "confirmed": c.confirmed,
            "score": c.mean, "interval": None if interval is None else list(interval),
            "sd": c.sd, "n_runs": c.n, "runs": [t.number for t in c.runs],
            "values": c.values, "search_value": c.search_value,
            "params": dict(c.origin.params),
        })
    return {
        "format": FORMAT,
        "study": name,
        "metric": metric,
        "configs": rows,
        "comparison": None if comparison is None else comparison.as_dict(),
    }

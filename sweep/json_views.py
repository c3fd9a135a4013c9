"""Machine-readable `sweep status --json` and `sweep best --json`: plain JSON objects whose keys
are documented in the README and kept stable (new keys may be added; none is renamed or
dropped without a `format` bump). Values are JSON numbers, strings, lists or null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweep.ranking import ConfigRuns, PairedTest

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
    name: str, metric: str, configs: list[ConfigRuns], test: PairedTest | None
) -> dict[str, Any]:
    """`sweep best --json`: the ranked configs, best first, and the test of #1 against #2."""
    return {
        "format": FORMAT,
        "study": name,
        "metric": metric,
        "configs": [
            {"rank": rank, "trial": c.origin.number, "mean": c.mean, "sd": c.sd,
             "n_runs": len(c.runs), "runs": [t.number for t in c.runs], "values": c.values,
             "single_run": c.origin.value, "confirmed": c.confirmed,
             "params": dict(c.origin.params)}
            for rank, c in enumerate(configs, 1)
        ],
        "paired_test": None if test is None else test.as_dict(),
    }

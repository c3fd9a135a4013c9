"""Rich tables for `sweep status` and `sweep best` (rendering only: the data comes from
sweep.status and sweep.api). The first line of each stays a plain sentence for grep and logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from sweep.record import load

if TYPE_CHECKING:
    from sweep.ranking import Comparison, ConfigRuns


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _ago(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f}s ago"


def status_view(d: dict[str, Any]) -> Group:
    """Headline, then the workers seen recently and the running trials, as tables."""
    fails = ", ".join(f"{k} {v}" for k, v in sorted(d["failures"].items())) or "none"
    best = d["headline_best"]
    finished = d["complete"] + d["pruned"]
    parts: list[Any] = [Text(
        f"{d['name']}: {d['complete']} complete, {d['pruned']} pruned, {d['failed']} failed, "
        f"{len(d['running'])} running, {d['waiting']} waiting; target {d['target']} "
        f"({finished}/{d['target']} finished); {d.get('confirmations', 0)} confirmation runs "
        f"complete; failures: {fails}; best {best}"
    )]
    if d.get("halt") is not None:
        parts.append(Text(f"halted: {d['halt'].line(d['name'])}"))
    if d["failures"]:
        table = Table(title=f"{d['name']}: failures by kind", title_justify="left")
        for col in ("kind", "trials", "latest", "its message"):
            table.add_column(col, overflow="fold")
        for kind, count in sorted(d["failures"].items()):
            number, message = d["latest_failure"].get(kind, (None, ""))
            table.add_row(kind, str(count), "—" if number is None else f"trial {number}",
                          message or "—")
        parts.append(table)
    if d["workers"]:
        table = Table(title=f"{d['name']}: workers seen in the last 10 min", title_justify="left")
        for col in ("worker", "running trial", "heartbeat", "finished", "last finished"):
            table.add_column(col)
        for w in d["workers"]:
            table.add_row(w["worker"], "—" if w["running"] is None else str(w["running"]),
                          _ago(w["heartbeat"]), str(w["finished"]), _ago(w["last_s"]))
        parts.append(table)
    if d["running_trials"]:
        table = Table(title=f"{d['name']}: running trials", title_justify="left")
        for col in ("trial", "epoch", "last value", "heartbeat", "worker", "params"):
            table.add_column(col)
        for t in d["running_trials"]:
            steps = t.intermediate_values
            epoch = max(steps) if steps else 0
            table.add_row(str(t.number), str(epoch), f"{steps[epoch]:.4f}" if steps else "—",
                          _ago(d["ages"].get(t.number)), load(t, ("worker",)).worker or "—",
                          _params(t.params))
        parts.append(table)
    return Group(*parts)


def ranked_view(
    name: str, configs: list[ConfigRuns], metric: str, test: Comparison | None = None
) -> Group:
    """Configs best first: each config's confirmed score (the mean of its confirmation runs,
    with its interval; the search trial that selected it is shown apart, never averaged in),
    and #1 against #2 with the margin, its interval and the probability that #1 is best.
    """
    level = 0.95  # each config's interval; #1 vs #2 is at the race's corrected level
    table = Table(title=f"{name}: best {len(configs)} config(s)", title_justify="left")
    for col in ("rank", "trial", f"{metric} confirmed [{level:.0%} interval]", "runs",
                "search run", "params"):
        table.add_column(col, overflow="fold")
    for rank, c in enumerate(configs, 1):
        if c.confirmed:
            ci = c.interval(level)
            score = f"{c.mean:.4f}" + ("" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]")
        else:
            score = "— (not confirmed)"
        table.add_row(str(rank), str(c.origin.number), score, str(c.n),
                      f"{c.search_value:.4f}", _params(c.origin.params))
    parts: list = [table]
    if test is not None:
        best = ("" if test.prob_best is None
                else f"; P(#1 is the best) = {test.prob_best:.2f}")
        parts.append(Text(f"{test.line()}{best} ({test.level:.1%} Welch interval over "
                          "confirmation runs; search runs excluded: they selected the configs)"))
    return Group(*parts)


def best_view(name: str, rows: list, metric: str) -> Group:
    """The best trials, best first, as a table."""
    table = Table(title=f"{name}: best {len(rows)} trial(s)", title_justify="left")
    for col in ("rank", "trial", metric, "params"):
        table.add_column(col, overflow="fold")
    for rank, t in enumerate(rows, 1):
        table.add_row(str(rank), str(t.number), f"{t.value:.4f}", _params(t.params))
    return Group(table)


def show(renderable: RenderableType) -> None:
    """Print to the current stdout (wide enough for params when it is not a terminal)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(renderable)

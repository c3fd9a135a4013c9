"""`sweep confirm` and `sweep compare`: the commands that check a study's answer."""

from __future__ import annotations

from pathlib import Path

import typer

from sweep.cli.app import STORAGE, app, errors


@app.command()
def confirm(
    study: str | None = typer.Option(None, "--study", help="Default: the most recently run."),
    top: int | None = typer.Option(
        None, "--top", min=1, help="Configs to confirm (default: the spec's, else 3)."),
    repeats: int | None = typer.Option(
        None, "--repeats", min=1, help="Fresh runs per config and racing round (default: "
        "the spec's, else 3)."),
    storage: str = STORAGE,
    data: Path | None = typer.Option(
        None, "--data", envvar="CLOUDSWEEP_DATA",
        help="38-Cloud root (default: the path the study was created with)."),
) -> None:
    """Race the study's top configs: rounds of fresh runs (not pruned, not counted toward
    --trials) until the leader beats the rest or the run budget is spent, run here and by any
    other worker; then `sweep best` ranks by the mean of each config's confirmation runs.
    """
    with errors():
        from sweep.api import confirm_study, ranked_configs
        from sweep.status import latest_study
        from sweep.storage import read_storage
        from sweep.tables import ranked_view, show

        name = study or latest_study(read_storage(storage))
        ran = confirm_study(name, storage=storage, top=top, repeats=repeats, data=data)
        configs, test = ranked_configs(name, storage=storage)
        show(ranked_view(name, configs[:ran.top], "value", test))


@app.command()
def compare(
    out: Path = typer.Option(..., "--out", help="The grid, a PNG file."),
    study: str | None = typer.Option(None, "--study", help="Default: the most recently run."),
    top: int = typer.Option(3, "--top", min=1, max=12, help="Configs (columns)."),
    storage: str = STORAGE,
) -> None:
    """The top configs side by side on the study's hard-case panel (rows: panel patches;
    columns: configs, titled with params and confirmed score; TP/FP/FN colours); the grid
    is also attached to the study, for the dashboard.
    """
    with errors():
        from sweep.api import compare_configs
        from sweep.status import latest_study
        from sweep.storage import read_storage

        name = study or latest_study(read_storage(storage))
        typer.echo(f"wrote {compare_configs(name, out, storage=storage, top=top)} "
                   f"(attached to study {name!r})")

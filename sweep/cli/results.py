"""What a study holds: `sweep status`, `sweep best` (and its export), `sweep dashboard`, and
`sweep mirror` (W&B).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sweep.cli.app import STORAGE, WandbMode, app, errors
from sweep.errors import SweepError


@app.command()
def status(
    study: str | None = typer.Option(None, "--study", help="One study (default: all)."),
    storage: str = STORAGE,
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (README)."),
) -> None:
    """Studies, trials by state and failure class, best value, running trials' heartbeats."""
    with errors():
        from sweep.status import describe, load, study_names
        from sweep.storage import read_storage

        st = read_storage(storage)
        names = [study] if study else study_names(st)
        if as_json:
            from sweep.json_views import status_document

            document = status_document([describe(st, load(st, name)) for name in names])
            typer.echo(json.dumps(document, indent=2))
            return
        if not names:
            typer.echo("no studies yet")
        from sweep.tables import show, status_view

        for name in names:
            show(status_view(describe(st, load(st, name))))


@app.command()
def best(
    study: str | None = typer.Option(None, "--study", help="Default: the most recently run."),
    top: int = typer.Option(5, "--top", min=1, help="Rows in the table."),
    export: str | None = typer.Option(
        None, "--export", help="Export the best trial's bundle to DIR (alone: exports/<study>); "
        "a bundle already there is replaced whole.",
    ),
    trial: int | None = typer.Option(
        None, "--trial", min=0, help="With --export: export trial N instead of the best."
    ),
    storage: str = STORAGE,
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on stdout (README); --export's line goes to stderr."
    ),
) -> None:
    """The best trials as a table; --export writes the best one (or --trial N) as a
    self-contained bundle, atomically: rerunning it is safe.
    """
    with errors():
        if trial is not None and export is None:
            raise SweepError("--trial N chooses the trial to export: add --export [DIR]")
        from sweep.api import export_best, ranked_configs
        from sweep.status import latest_study, load
        from sweep.storage import read_storage
        from sweep.tables import ranked_view, show

        name = study or latest_study(read_storage(storage))
        if export is not None:  # a name that is no safe folder is refused before anything
            from sweep.export import default_destination

            folder = Path(export) if export else default_destination(name)
        configs, test = ranked_configs(name, storage=storage)
        if not configs:
            raise SweepError(f"study {name!r} has no completed trial yet")
        metric = load(read_storage(storage), name).user_attrs.get("spec", {}).get("metric")
        if as_json:
            from sweep.json_views import best_document

            document = best_document(name, metric or "value", configs[:top], test)
            typer.echo(json.dumps(document, indent=2))
        else:
            show(ranked_view(name, configs[:top], metric or "value", test))
        if export is not None:
            dest = export_best(name, folder, storage=storage, trial=trial)
            shown = json.loads((dest / "metrics.json").read_text())["trial"]
            typer.echo(f"exported trial {shown} to {dest}", err=as_json)


@app.command()
def dashboard(
    study: str | None = typer.Option(None, "--study", help="Print this study's page URL."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (local only by default)."),
    storage: str = STORAGE,
    artifact_dir: Path | None = typer.Option(None, "--artifact-dir", help="Default: next to DB."),
) -> None:
    """optuna-dashboard on the same storage and artifact directory (trials, curves, images)."""
    with errors():
        from sweep.api import serve_dashboard

        try:
            serve_dashboard(storage, host=host, port=port, study=study,
                            artifact_dir=artifact_dir, echo=typer.echo)
        except OSError as err:  # the address is taken or cannot be bound: an input, not a bug
            if err.strerror is None:
                raise
            raise SweepError(f"dashboard: cannot listen on {host}:{port}: {err.strerror} "
                                "(choose another with --port / --host)") from None


@app.command()
def mirror(
    study: str = typer.Option(..., "--study", help="Study name."),
    storage: str = STORAGE,
    wandb: WandbMode = typer.Option(
        WandbMode.online, "--wandb", help="online (offline when no API key) or offline folders."
    ),
    wandb_dir: Path | None = typer.Option(None, "--wandb-dir", help="Default: $WANDB_DIR or ."),
    project: str = typer.Option("cloudsweep", "--project", help="W&B project."),
    entity: str | None = typer.Option(None, "--entity", help="W&B entity (default: yours)."),
    force: bool = typer.Option(False, "--force", help="Upload every trial again (same runs)."),
) -> None:
    """Upload the finished trials that W&B lacks (after an outage, from any machine)."""
    with errors():
        from sweep.mirror import mirror_study
        from sweep.storage import read_storage

        report = mirror_study(
            read_storage(storage), study, mode=wandb.value, wandb_dir=wandb_dir,
            project=project, entity=entity, force=force,
        )
        typer.echo(str(report))
        for number, error in sorted(report.failed.items()):
            typer.echo(f"  trial {number}: {error}", err=True)
        if not report.ok:
            raise typer.Exit(1)

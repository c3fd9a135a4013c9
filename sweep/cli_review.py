"""`sweep confirm` and `sweep compare`: the commands that check a study's answer."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from sweep.cli import STORAGE, _errors

    @app.command()
    def confirm(
        study: str | None = typer.Option(None, "--study", help="Default: the most recently run."),
        top: int | None = typer.Option(
            None, "--top", min=1, help="Configs to confirm (default: the spec's, else 3)."),
        repeats: int | None = typer.Option(
            None, "--repeats", min=1, help="Fresh-subset runs per config (default: the "
            "spec's, else 3)."),
        storage: str = STORAGE,
        data: Path | None = typer.Option(
            None, "--data", envvar="CLOUDSWEEP_DATA",
            help="38-Cloud root (default: the path the study was created with)."),
    ) -> None:
        """Retrain the study's top configs on fresh training subsets (not pruned, not counted
        toward --trials) and wait for them, running them here when no other worker does; then
        `sweep best` ranks by the mean of each config's runs."""
        with _errors():
            from sweep.api import confirm_study, ranked_configs
            from sweep.status import latest_study
            from sweep.storage import read_storage
            from sweep.tables import ranked_view, show

            name = study or latest_study(read_storage(storage))
            top, repeats = confirm_study(name, storage=storage, top=top, repeats=repeats,
                                         data=data)
            configs, test = ranked_configs(name, storage=storage)
            show(ranked_view(name, configs[:top], "value", test))

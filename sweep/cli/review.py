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


@app.command()
def finalize(
    study: str | None = typer.Option(None, "--study", help="Default: the most recently run."),
    top: int = typer.Option(
        1, "--top", min=1, help="Final fits of the K best configs (3+: the report gives the "
        "rank correlation between the search and the test scores)."),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Epochs of each final fit (default: twice the search "
        "budget's; fixed once the final-fit study exists)."),
    storage: str = STORAGE,
    data: Path | None = typer.Option(
        None, "--data", envvar="CLOUDSWEEP_DATA",
        help="38-Cloud root with 38-Cloud_test/ (default: the path the study was created with)."),
    out: Path | None = typer.Option(
        None, "--out", help="Report and bundles folder (default: exports/<study>.final/)."),
    device: str = typer.Option("auto", "--device", help="Test-split prediction: auto, cpu, cuda."),
    overrides: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help="Change a field of the final fits' spec when "
        "their study is created, e.g. --set budget.batches_per_epoch=null (repeatable)."),
) -> None:
    """Train the winner (with --top K, the K best configs) again on the full training set for a
    full budget, as trials of the study `<study>.final` that any worker running this command
    picks up (rerun to resume); then predict the test split, score it with `cloudseg
    evaluate`'s protocol and write report.md, report.html and the bundles.
    """
    with errors():
        from sweep.final.finalize import finalize as run_finalize
        from sweep.status import latest_study
        from sweep.storage import read_storage

        name = study or latest_study(read_storage(storage))
        r = run_finalize(name, storage=storage, top=top, epochs=epochs, data=data, out=out,
                         overrides=overrides, device=device)
        for s in r.scores:
            typer.echo(f"rank {s.rank} (search trial {s.origin}, final fit {r.final_study} "
                       f"trial {s.trial}): test J {100 * s.official.mean['iou']:.2f} per-scene "
                       f"mean at 12/255 ({100 * s.official.pooled.iou:.2f} pooled), "
                       f"{100 * s.at_bundle.mean['iou']:.2f} at {s.at_bundle.threshold:.4f}"
                       + ("" if s.cloudnet is None else
                          f"; Cloud-Net {100 * s.cloudnet.means()[1]['iou']:.2f} on the "
                          f"{len(s.cloudnet.scenes)} shared scenes"))
        if r.correlation is not None:
            typer.echo(f"Spearman rho (search value vs test J, {r.correlation['n']} configs): "
                       f"{r.correlation['spearman_rho']:.3f}")
        typer.echo(f"report: {r.report_html} and {r.report_md}; winner's bundle: "
                   f"{r.scores[0].bundle}")

"""`sweep run` (a study on this machine, until its target) and `sweep worker` (join a study from
any machine).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from sweep.cli.app import STORAGE, WandbMode, app, errors
from sweep.storage import DEFAULT_STORAGE

SET = typer.Option(
    [], "--set", metavar="KEY=VALUE",
    help="Change a spec field before it is validated, e.g. --set budget.epochs=2 "
    "--set fixed.train.num_workers=1 (repeatable; VALUE is YAML).",
)


@app.command()
def run(
    study: str = typer.Option(..., "--study", help="Study name (studies/NAME.yaml) or spec path."),
    trials: int = typer.Option(..., "--trials", help="Study-wide target of finished trials."),
    storage: str = STORAGE,
    data: Path | None = typer.Option(None, "--data", help="38-Cloud root (else $CLOUDSWEEP_DATA)."),
    workers: int | None = typer.Option(
        None, "--workers",
        help="Local worker processes (default: execution.trials_per_gpu per GPU, else 1).",
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop starting trials after T s."),
    wandb: WandbMode = typer.Option(WandbMode.off, "--wandb", help="Mirror trials to W&B."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live view."),
    overrides: list[str] = SET,
) -> None:
    """Run a study until TRIALS trials are finished (complete + pruned); rerun to resume."""
    with errors():
        from sweep.execution.runner import run_study
        from sweep.mirror.options import MirrorOptions
        from sweep.study.spec import load_spec

        spec = load_spec(study, overrides)
        hooks = (None if wandb is WandbMode.off
                 else {"wandb": MirrorOptions.model_validate({"mode": wandb.value})})
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the mirror table's clock
        summary = run_study(
            spec, trials, storage=storage, data=data, workers=workers, timeout=timeout,
            hooks=hooks, progress=progress,
        )
        best = "none yet" if summary.best_number is None else f"{spec.metric} {summary.headline}"
        if summary.search_stopped:
            typer.echo(summary.search_stopped)
        typer.echo(
            f"{summary.study}: {summary.complete + summary.pruned}/{summary.target} finished "
            f"({summary.pruned} pruned, {summary.failed} failed); best: {best}"
            + (f"; {summary.confirmations} confirmation runs (see `sweep best`)"
               if summary.confirmations else "")
        )
        if hooks is not None:  # online without an API key writes offline runs too
            from sweep.mirror.sync_hint import offline_hint

            hint = offline_hint(storage, summary.study, since=started)
            if hint:
                typer.echo(f"W&B runs written offline: {hint}")
        if summary.lost_workers:
            typer.echo(f"note: {len(summary.lost_workers)} local worker process(es) ended "
                       f"early (exit codes {list(summary.lost_workers)}); the others finished "
                       "the study", err=True)


@app.command()
def worker(
    study: str = typer.Option(
        ..., "--study", help="Study name or spec path; created from its spec when missing."
    ),
    storage: str = typer.Option(
        DEFAULT_STORAGE, "--storage", envvar="SWEEP_STORAGE",
        help="The study's storage; across machines postgresql+psycopg://USER@HOST/DB "
        "(keep the password in PGPASSWORD or ~/.pgpass, not in the URL).",
    ),
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Study-wide target of finished trials (default: the study's)."
    ),
    data: Path | None = typer.Option(
        None, "--data", envvar="CLOUDSWEEP_DATA", help="38-Cloud root on this machine "
        "(default: the path the study was created with)."
    ),
    artifact_dir: Path | None = typer.Option(
        None, "--artifact-dir", envvar="SWEEP_ARTIFACTS",
        help="Shared artifact directory (default: the study's).",
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Stop starting trials after T s."),
    overrides: list[str] = SET,
    resume: bool = typer.Option(
        False, "--resume", help="Take trials again in a study its failures stopped."
    ),
) -> None:
    """Join a study from any machine (creating it from its spec when missing) and run its
    trials until the study-wide target is met; every machine runs this same command.

    The same engine as `sweep run`: one process, one GPU (pick it with CUDA_VISIBLE_DEVICES).
    A worker whose study is already done exits 0.
    """
    with errors():
        from sweep.execution.join import join_or_create
        from sweep.execution.runner import check_timeout, summarise
        from sweep.execution.workers import work
        from sweep.storage import redact

        check_timeout(timeout)
        name = join_or_create(study, storage, trials=trials, data=data, overrides=overrides,
                              resume=resume)
        work(name, storage, data=data, target=trials, timeout=timeout, artifact_dir=artifact_dir)
        s = summarise(name, storage)
        typer.echo(
            f"{s.study} in {redact(storage)}: {s.complete + s.pruned}/{trials or s.target} "
            f"finished ({s.pruned} pruned, {s.failed} failed)"
        )

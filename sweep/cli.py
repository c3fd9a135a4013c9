"""`sweep` command line (typer): each command parses its options and calls the sweep API.

Heavy imports (torch, via cloudseg training) happen only inside `run` and `best --export`, so
`sweep --help` and `sweep status` stay fast. Every expected error (a cloudseg/sweep error or a
bad flag) is one line on stderr and exit code 2; anything else is a bug: one line saying so and
exit code 1 (`sweep --debug ...` or CLOUDSWEEP_DEBUG=1 shows the traceback). Ctrl-C is exit code
130 after the running trial has been marked interrupted.
"""

from __future__ import annotations

import contextlib
import json
import sys
from enum import StrEnum
from pathlib import Path

import typer

from cloudseg.errors import CloudsegError, bug_line, debug_enabled, one_line
from sweep.storage import DEFAULT_STORAGE

app = typer.Typer(
    name="sweep",
    help="Hyperparameter sweeps for cloud segmentation (38-Cloud), on Optuna.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STORAGE = typer.Option(DEFAULT_STORAGE, "--storage", help="Optuna RDB URL (SQLite file default).")


class WandbMode(StrEnum):
    off = "off"
    offline = "offline"
    online = "online"


_DEBUG = {"on": False}  # set by `sweep --debug`


def _print_version(on: bool) -> None:
    if on:
        from cloudseg.cli import package_version

        typer.echo(f"sweep {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an unexpected error (or CLOUDSWEEP_DEBUG=1)."
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=lambda on: _print_version(on),
        help="Print the version and exit.",
    ),
) -> None:
    """Hyperparameter sweeps for cloud segmentation (38-Cloud), on Optuna."""
    _DEBUG["on"] = debug


@contextlib.contextmanager
def _errors():
    """Library errors → `error: <one line>` and exit code 2; Ctrl-C → exit code 130; anything
    else is a bug → one line saying so (the traceback with --debug) and exit code 1."""
    try:
        yield
    except CloudsegError as err:
        typer.echo(f"error: {one_line(err)}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: the running trial is marked FAILED (interrupted); rerun to "
                   "resume", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as err:
        if _DEBUG["on"] or debug_enabled():
            raise
        typer.echo(bug_line(err, "sweep --debug"), err=True)
        raise typer.Exit(1) from None


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
) -> None:
    """Run a study until TRIALS trials are finished (complete + pruned); rerun to resume."""
    with _errors():
        from sweep.execution.runner import run_study
        from sweep.study.spec import load_spec

        spec = load_spec(study)
        hooks = None if wandb is WandbMode.off else {"wandb": {"mode": wandb.value}}
        summary = run_study(
            spec, trials, storage=storage, data=data, workers=workers, timeout=timeout,
            hooks=hooks, progress=progress,
        )
        best = "none yet" if summary.best_number is None else (
            f"trial {summary.best_number}, {spec.metric} {summary.best_value:.4f}"
        )
        typer.echo(
            f"{summary.study}: {summary.complete + summary.pruned}/{summary.target} finished "
            f"({summary.pruned} pruned, {summary.failed} failed); best: {best}"
            + (f"; {summary.confirmations} confirmation runs (see `sweep best`)"
               if summary.confirmations else "")
        )
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
) -> None:
    """Join a study from any machine (creating it from its spec when missing) and run its
    trials until the study-wide target is met; every machine runs this same command.

    The same engine as `sweep run`: one process, one GPU (pick it with CUDA_VISIBLE_DEVICES).
    A worker whose study is already done exits 0.
    """
    with _errors():
        from sweep.execution.join import join_or_create
        from sweep.execution.runner import summarise
        from sweep.execution.workers import work
        from sweep.storage import redact

        name = join_or_create(study, storage, trials=trials, data=data)
        work(name, storage, data=data, target=trials, timeout=timeout, artifact_dir=artifact_dir)
        s = summarise(name, storage)
        typer.echo(
            f"{s.study} in {redact(storage)}: {s.complete + s.pruned}/{trials or s.target} "
            f"finished ({s.pruned} pruned, {s.failed} failed)"
        )


@app.command()
def status(
    study: str | None = typer.Option(None, "--study", help="One study (default: all)."),
    storage: str = STORAGE,
) -> None:
    """Studies, trials by state and failure class, best value, running trials' heartbeats."""
    with _errors():
        from sweep.status import describe, load, study_names
        from sweep.storage import read_storage

        st = read_storage(storage)
        names = [study] if study else study_names(st)
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
) -> None:
    """The best trials as a table; --export writes the best one (or --trial N) as a
    self-contained bundle, atomically: rerunning it is safe."""
    with _errors():
        if trial is not None and export is None:
            raise CloudsegError("--trial N chooses the trial to export: add --export [DIR]")
        from sweep.api import export_best, ranked_configs
        from sweep.status import latest_study, load
        from sweep.storage import read_storage
        from sweep.tables import ranked_view, show

        name = study or latest_study(read_storage(storage))
        configs, test = ranked_configs(name, storage=storage)
        if not configs:
            raise CloudsegError(f"study {name!r} has no completed trial yet")
        metric = load(read_storage(storage), name).user_attrs.get("spec", {}).get("metric")
        show(ranked_view(name, configs[:top], metric or "value", test))
        if export is not None:
            dest = export_best(name, Path(export or f"exports/{name}"), storage=storage,
                               trial=trial)
            shown = json.loads((dest / "metrics.json").read_text())["trial"]
            typer.echo(f"exported trial {shown} to {dest}")


@app.command()
def dashboard(
    study: str | None = typer.Option(None, "--study", help="Print this study's page URL."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (local only by default)."),
    storage: str = STORAGE,
    artifact_dir: Path | None = typer.Option(None, "--artifact-dir", help="Default: next to DB."),
) -> None:
    """optuna-dashboard on the same storage and artifact directory (trials, curves, images)."""
    with _errors():
        from sweep.api import serve_dashboard

        try:
            serve_dashboard(storage, host=host, port=port, study=study,
                            artifact_dir=artifact_dir, echo=typer.echo)
        except OSError as err:  # the address is taken or cannot be bound: an input, not a bug
            if err.strerror is None:
                raise
            raise CloudsegError(f"dashboard: cannot listen on {host}:{port}: {err.strerror} "
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
    with _errors():
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


from sweep.cli_review import register  # noqa: E402 - its commands need `app` and `_errors`

register(app)


def normalise_argv(argv: list[str]) -> list[str]:
    """`best --export` alone means "the default folder": typer options cannot take an optional
    value, so a bare `--export` (last, or followed by another option) becomes `--export=`."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--export" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--export="
    return out


def main() -> None:
    """Console-script entry point: a bad flag or value is one line and exit code 2, like every
    other input error, instead of click's usage block."""
    from typer.exceptions import TyperException  # typer's own copy of click's exceptions

    args = normalise_argv(sys.argv[1:])
    try:
        code = app(args=args, prog_name="sweep", standalone_mode=False)
    except TyperException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `sweep`: the help, as before
            app(args=["--help"], prog_name="sweep")
        ctx = getattr(err, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {one_line(Exception(err.format_message()))}{where}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as err:  # outside any command (option parsing, the callback)
        if _DEBUG["on"] or debug_enabled():
            raise
        typer.echo(bug_line(err, "sweep --debug"), err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

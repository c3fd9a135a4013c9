"""The `sweep` typer app, its global options, and `errors()`: the one place where an error
becomes one line on stderr and an exit code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum

import typer

from cloudseg import CloudsegError, bug_line, debug_enabled, one_line
from sweep.errors import SweepError
from sweep.storage import DEFAULT_STORAGE

app = typer.Typer(
    name="sweep",
    help="Hyperparameter sweeps for cloud segmentation (38-Cloud), on Optuna.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    pretty_exceptions_enable=False,
)

# Every command that takes --storage reads $SWEEP_STORAGE when the option is not given.
STORAGE = typer.Option(DEFAULT_STORAGE, "--storage", envvar="SWEEP_STORAGE",
                       help="Optuna RDB URL (SQLite file default).")


class WandbMode(StrEnum):
    """`--wandb` choices (typer lists them in --help)."""

    off = "off"
    offline = "offline"
    online = "online"


_DEBUG = {"on": False}  # set by `sweep --debug`


def _print_version(on: bool) -> None:
    if on:
        from cloudseg import package_version

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
def errors() -> Iterator[None]:
    """The one place errors become exit codes. Sweep's family (spec, storage, worker, export)
    and cloudseg's → `error: <one line>` and the error's exit code (2 for bad input, 3 for a
    run that stopped because its trials kept failing, 4 for the environment: a full disk); a
    damaged SQLite file or a full disk met inside Optuna or SQLAlchemy likewise; Ctrl-C → exit
    code 130; anything else is a bug → one line saying so (the traceback with --debug) and
    exit code 1.
    """
    try:
        yield
    except (SweepError, CloudsegError) as err:
        typer.echo(f"error: {one_line(err)}", err=True)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: the running trial is marked FAILED (interrupted); rerun to "
                   "resume", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as err:
        if _DEBUG["on"] or debug_enabled():
            raise
        from sweep.sqlite_file import fault_error

        fault = fault_error(err)  # a damaged database or a full disk met deep inside a library
        if fault is not None:
            typer.echo(f"error: {one_line(fault)}", err=True)
            raise typer.Exit(fault.exit_code) from None
        typer.echo(bug_line(err, "sweep --debug"), err=True)
        raise typer.Exit(1) from None

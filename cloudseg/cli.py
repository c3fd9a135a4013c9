"""`cloudseg` command line: parses arguments and calls the library. Heavy imports stay inside the
commands so `cloudseg --help` is instant. Library errors become one line and exit code 2."""

from __future__ import annotations

import sys

import typer

from cloudseg.errors import CloudsegError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def main() -> None:
    try:
        app(standalone_mode=False)
    except CloudsegError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


# Commands are added below, one short function each.

"""The console-script entry point (`sweep = "sweep.cli:main"`); importing it imports the
package, which registers every command. A bad flag or value is one line and exit code 2.
"""

from __future__ import annotations

import gc
import sys

import typer

from cloudseg import bug_line, debug_enabled, one_line
from sweep.cli.app import _DEBUG, app


def normalise_argv(argv: list[str]) -> list[str]:
    """`best --export` alone means "the default folder": typer options cannot take an optional
    value, so a bare `--export` (last, or followed by another option) becomes `--export=`.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--export" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--export="
    return out


def main() -> None:
    """Console-script entry point: a bad flag or value is one line and exit code 2, like every
    other input error, instead of click's usage block.
    """
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
    # The command is done: the interpreter's last garbage collection would now walk every
    # object Optuna, SQLAlchemy and pydantic made (half a second here). Frozen objects are
    # skipped; finalizers, atexit handlers and module teardown still run.
    gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)

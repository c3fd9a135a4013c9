"""`cloudseg` command line (argparse, so the library stays free of typer): each command is a
short function that parses its arguments and calls the library; the command groups live in
`data`, `train` and `predict` and register themselves with `registry.command`. Heavy imports
(torch) stay inside the commands so `cloudseg --help` is instant. Library errors and usage
errors become one line, exit 2; anything else is a bug: one line saying so, exit 1 (`--debug`
shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from cloudseg.cli import data, predict, train  # noqa: F401 - each registers its commands
from cloudseg.cli.registry import COMMANDS
from cloudseg.errors import DEBUG_ENV, CloudsegError, bug_line, debug_enabled, one_line


class _Parser(argparse.ArgumentParser):
    """A usage error is one line like every other error, not a usage block plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def package_version() -> str:
    """The installed distribution's version (one source: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudsweep")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The `cloudseg` parser with one sub-command per registered command."""
    parser = _Parser(prog="cloudseg", description="Cloud segmentation of Landsat 8 scenes "
                     "(38-Cloud / 95-Cloud): data, training, prediction, evaluation.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an unexpected error (or {DEBUG_ENV}=1)")
    parser.add_argument("--version", action="version", version=f"cloudseg {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, arguments, handler in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        arguments(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (errors as one line, see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2), already printed
        return done.code if isinstance(done.code, int) else 2
    try:
        return int(args.handler(args) or 0)
    except CloudsegError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug or debug_enabled():
            raise
        print(bug_line(err, "cloudseg --debug"), file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


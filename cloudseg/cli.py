"""`cloudseg` command line (argparse, so the library stays free of typer): each command is a
short function that parses its arguments and calls the library. Heavy imports (torch) stay
inside the commands so `cloudseg --help` is instant. Library errors become one line, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cloudseg.errors import CloudsegError

Handler = Callable[[argparse.Namespace], int | None]
_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = []


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `handler` as `cloudseg NAME`; `arguments` adds its options to the sub-parser."""

    def register(handler: Handler) -> Handler:
        _COMMANDS.append((name, help, arguments, handler))
        return handler

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudseg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, arguments, handler in _COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        arguments(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CloudsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


# ---- commands: one short function each; add new ones below -----------------------------------
# Command groups live in their own modules and register themselves on import.
from cloudseg import cli_data, cli_predict, cli_train  # noqa: E402, F401

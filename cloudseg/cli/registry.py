"""The `cloudseg` commands, registered by the modules that define them (`@command`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int | None]
Arguments = Callable[[argparse.ArgumentParser], None]
COMMANDS: list[tuple[str, str, Arguments, Handler]] = []


def command(name: str, help: str, arguments: Arguments) -> Callable[[Handler], Handler]:
    """Register `handler` as `cloudseg NAME`; `arguments` adds its options to the sub-parser."""

    def register(handler: Handler) -> Handler:
        COMMANDS.append((name, help, arguments, handler))
        return handler

    return register

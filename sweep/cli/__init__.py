"""`sweep` command line (typer): each command parses its options and calls the sweep API.

    app      the typer app, global options (--debug, --version) and `errors()`, the one place
             where an error becomes one line and an exit code
    running  `sweep run`, `sweep worker`
    results  `sweep status`, `sweep best [--export]`, `sweep dashboard`, `sweep mirror`
    review   `sweep confirm`, `sweep compare`: the commands that check a study's answer
    entry    `main`, the console script (`python -m sweep.cli` runs it too)

Heavy imports (torch, via cloudseg training) happen only inside `run` and `best --export`, so
`sweep --help` and `sweep status` stay fast. Every expected error (sweep's family, cloudseg's,
a bad flag) is one line on stderr and exit code 2; anything else is a bug: one line saying so
and exit code 1 (`sweep --debug ...` or CLOUDSWEEP_DEBUG=1 shows the traceback). Ctrl-C is exit
code 130 after the running trial has been marked interrupted.
"""

from __future__ import annotations

# isort: off
# Each command module registers its commands on `app`, in the order `sweep --help` lists them.
from sweep.cli import running  # noqa: F401
from sweep.cli import results  # noqa: F401
from sweep.cli import review  # noqa: F401
from sweep.cli.app import _DEBUG, app, errors
from sweep.cli.entry import main, normalise_argv
# isort: on

__all__ = ["_DEBUG", "app", "errors", "main", "normalise_argv"]

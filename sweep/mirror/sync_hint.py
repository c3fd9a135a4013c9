"""The `wandb sync` line for offline runs: which folder `wandb sync` accepts. An offline run
lives in `<dir>/wandb/offline-run-<time>-<id>/`; `wandb sync` takes that run folder or the
`wandb` folder holding it (`wandb sync <dir>` finds no runs), so the hint names the parents of
the run folders written.
"""

from __future__ import annotations

import datetime as dt
import shlex
import socket
from collections.abc import Iterable
from pathlib import Path


def sync_folders(run_dirs: Iterable[str | None]) -> list[str]:
    """The `wandb` folders that hold these offline run folders, each once, sorted."""
    return sorted({str(Path(d).parent) for d in run_dirs if d})


def sync_hint(run_dirs: Iterable[str | None]) -> str | None:
    """`upload later with `wandb sync FOLDER ...``, or None when no offline run was written."""
    folders = sync_folders(run_dirs)
    if not folders:
        return None
    return f"upload later with `wandb sync {' '.join(shlex.quote(f) for f in folders)}`"


def offline_hint(
    storage_url: str, study_name: str, since: dt.datetime | None = None
) -> str | None:
    """The sync line for the offline runs this machine wrote for `study_name` (since `since`,
    a naive UTC time, when given): what `sweep run --wandb offline` prints at its end. The
    mirror table records each run's folder and host, whichever worker process wrote it.
    """
    from sweep.mirror.state import MirrorState

    host = socket.gethostname()
    with MirrorState(storage_url) as state:
        records = state.all(study_name)
    dirs = [r.run_dir for r in records.values()
            if r.mode == "offline" and r.host == host and r.run_dir
            and (since is None or (r.mirrored_at is not None and r.mirrored_at >= since))
            and Path(r.run_dir).is_dir()]
    return sync_hint(dirs)

"""The W&B mirror: each finished trial as one W&B run, the study storage the source of truth.

    core        a mirror pass over a study (`mirror_study`), what is mirrored, where
    background  `BackgroundMirror`: passes in a separate process, never blocking a trial
    payload     what a trial's run holds (config, history, best-epoch summary), stable run ids
    upload      the wandb calls (the only module that imports wandb, lazily)
    media       validation overlays as `wandb.Image(masks=...)`
    state       the mirror's own table: which trial went to which run, and its content hash
    options     `MirrorOptions`: the typed options of `sweep run --wandb` (the `wandb` hook)

Public names load on first use, so `import sweep.mirror` costs neither optuna nor wandb.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "mirror_study": "core",
    "mirrored_runs": "core",
    "planned_run_path": "core",
    "MirrorReport": "core",
    "Mode": "upload",
    "resolve_mode": "upload",
    "has_credentials": "upload",
    "BackgroundMirror": "background",
    "wandb_hook": "background",
    "MirrorOptions": "options",
    "MirrorRecord": "state",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"sweep.mirror.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'sweep.mirror' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

"""`MirrorOptions`: what `sweep run --wandb MODE` asks of the W&B mirror, typed and validated
where it is given, so a worker process receives the same model rather than loose keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MirrorOptions(BaseModel):
    """Options of the `wandb` post-trial hook (sweep.hooks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["online", "offline", "off", "auto"] = "auto"  # auto: online with an API key
    project: str = "cloudsweep"
    entity: str | None = None  # None: the key's default entity
    wandb_dir: Path | None = None  # where offline runs go (None: $WANDB_DIR or .)
    storage: str | None = None  # the study's storage URL (None: the worker's, by build_hooks)
    artifact_dir: Path | None = None  # None: the study's `artifact_dir` user attr
    close_timeout: float = Field(120.0, gt=0)  # seconds `close()` waits for pending uploads
    isolation: Literal["process", "thread"] = "process"  # thread: storage objects without URL

"""Checkpoint bundles: a directory with `config.yaml` (the RunConfig that built and trained the
model), `model.safetensors` (weights only, never pickle) and optionally `metrics.json`.

The config travels with the weights, so `load_bundle` can rebuild the exact architecture and
knows how inputs were normalised. The same layout is what `sweep best --export` writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudseg.config import RunConfig, load_run_config
from cloudseg.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"


def _write_atomic(path: Path, write) -> None:
    # A reader (or a crash) never sees half a file: write beside it, then rename over it.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_bundle(
    directory: str | Path,
    model: nn.Module,
    config: RunConfig,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write (or overwrite) a bundle; returns its directory."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "cloudseg_config": json.dumps(config.to_dict())}
    # save_model drops tied duplicates and makes channels_last weights contiguous.
    _write_atomic(directory / WEIGHTS_FILE, lambda p: save_model(model, str(p), metadata=meta))
    _write_atomic(directory / CONFIG_FILE, lambda p: p.write_text(config.to_yaml()))
    if metrics is not None:
        text = json.dumps(metrics, indent=2, sort_keys=True)
        _write_atomic(directory / METRICS_FILE, lambda p: p.write_text(text + "\n"))
    return directory


def load_bundle(directory: str | Path, device: str = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild the model from the bundle's config and load its weights (eval mode)."""
    from safetensors.torch import load_model

    from cloudseg.models import build_model

    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    for needed in (directory / CONFIG_FILE, weights):
        if not needed.is_file():
            raise ConfigError(f"{directory}: not a checkpoint bundle (missing {needed.name})")
    config = load_run_config(directory / CONFIG_FILE)
    model = build_model(config.model)
    try:
        load_model(model, weights, strict=True, device=device)
    except RuntimeError as err:  # shape or key mismatch between config and weights
        name = config.model.name
        raise ConfigError(f"{weights}: weights do not fit model {name!r}: {err}") from None
    return model.to(device).eval(), config


def load_metrics(directory: str | Path) -> dict[str, Any] | None:
    """The bundle's metrics.json, or None when it has none."""
    path = Path(directory) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None

"""Checkpoint bundles: a directory with `config.yaml` (the RunConfig that built and trained the
model), `model.safetensors` (weights only, never pickle) and optionally `metrics.json`.

The config travels with the weights, so `load_bundle` can rebuild the exact architecture and
knows how inputs were normalised. The same layout is what `sweep best --export` writes.

A bundle's parts must belong together, and `check_bundle` (run by `load_bundle`) says so in one
line when they do not:
- the weights carry the config they were trained with (safetensors metadata): config.yaml must
  equal it except where and how the model runs (`FREE_FIELDS`: data root, cache, device, loader
  workers, decision threshold);
- an exported bundle's metrics.json names its study and trial and the sha256 of its weights
  (`weights_sha256`): the weights file must have that digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cloudseg.config import RunConfig, load_run_config, parse_run_config
from cloudseg.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
CONFIG_META_KEY = "cloudseg_config"  # the training config, as JSON, in the weights' metadata
DIGEST_KEY = "weights_sha256"  # metrics.json: sha256 of model.safetensors (exported bundles)
# config.yaml fields that may differ from the config inside the weights: where and how the
# model runs, not what it is or how it was trained.
FREE_FIELDS = frozenset({
    "data.root", "data.cache_dir", "train.device", "train.num_workers", "train.threads",
    "train.threshold",
})


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    # A reader (or a crash) never sees half a file: write beside it, then rename over it.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def bundle_yaml(config: RunConfig) -> str:
    """A bundle's config.yaml: `config.to_yaml()`, except that a from-scratch model's section
    leaves out `encoder` (it has none; the field's default fills it back when read).
    """
    from cloudseg.models import MODELS

    data = config.to_dict()
    if config.model.name in MODELS and not MODELS.get(config.model.name).uses_encoder:
        data["model"].pop("encoder", None)
    return yaml.safe_dump(data, sort_keys=False)


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
    _write_atomic(directory / CONFIG_FILE, lambda p: p.write_text(bundle_yaml(config)))
    if metrics is not None:
        text = json.dumps(metrics, indent=2, sort_keys=True)
        _write_atomic(directory / METRICS_FILE, lambda p: p.write_text(text + "\n"))
    return directory


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _unreadable(weights: Path, err: BaseException) -> ConfigError:
    detail = " ".join(str(err).split()) or type(err).__name__
    return ConfigError(
        f"{weights}: not a readable safetensors file ({detail}); the file is damaged or "
        "truncated: export or save the bundle again"
    )


def weights_metadata(weights: str | Path) -> dict[str, str]:
    """The safetensors header's metadata; a damaged file is one ConfigError naming it."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as err:  # SafetensorError, OSError, a header that is not JSON, ...
        raise _unreadable(Path(weights), err) from None


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_metrics(directory: str | Path) -> dict[str, Any] | None:
    """The bundle's metrics.json, or None when it has none; unreadable JSON names the file."""
    path = Path(directory) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_bundle(directory: str | Path) -> RunConfig:
    """Check that a bundle's config.yaml, model.safetensors and metrics.json belong together
    (without building the model); returns the config. Every problem is one ConfigError line.
    """
    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for needed in (config_path, weights):
        if not needed.is_file():
            raise ConfigError(f"{directory}: not a checkpoint bundle (missing {needed.name})")
    config = load_run_config(config_path)
    from cloudseg.models import MODELS

    if config.model.name not in MODELS:
        raise ConfigError(f"{config_path}: model.name: unknown model {config.model.name!r}; "
                          f"valid: {', '.join(MODELS.names())}")
    meta = weights_metadata(weights)
    metrics = load_metrics(directory)
    if metrics is not None and metrics.get(DIGEST_KEY):
        actual = file_sha256(weights)
        if actual != metrics[DIGEST_KEY]:
            owner = (f"study {metrics.get('study')!r} trial {metrics.get('trial')}"
                     if "trial" in metrics else "this bundle")
            raise ConfigError(
                f"{directory}: {WEIGHTS_FILE} does not belong to this bundle: {METRICS_FILE} "
                f"records the weights of {owner} (sha256 {metrics[DIGEST_KEY][:12]}...), the file "
                f"has sha256 {actual[:12]}...; export the bundle again"
            )
    if CONFIG_META_KEY in meta:
        try:
            trained = parse_run_config(json.loads(meta[CONFIG_META_KEY]), f"{weights} metadata")
        except (ValueError, ConfigError) as err:
            raise ConfigError(f"{weights}: unreadable training config in its metadata: {err}") \
                from None
        mine, theirs = _flat(config.to_dict()), _flat(trained.to_dict())
        free = FREE_FIELDS | ({"model.encoder"} if not MODELS.get(config.model.name)
                              .uses_encoder else set())  # a from-scratch model has none
        differ = sorted(k for k in mine.keys() | theirs.keys()
                        if k not in free and mine.get(k) != theirs.get(k))
        if differ:
            shown = "; ".join(f"{k}: {_short(mine.get(k))} in {CONFIG_FILE}, "
                              f"{_short(theirs.get(k))} in the weights" for k in differ[:3])
            more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
            raise ConfigError(
                f"{directory}: {CONFIG_FILE} and {WEIGHTS_FILE} do not belong together: "
                f"{shown}{more}; export the bundle again (only "
                f"{', '.join(sorted(FREE_FIELDS))} may be edited)"
            )
    return config


def load_bundle(directory: str | Path, device: str = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild the model from the bundle's config and load its weights (eval mode), after
    `check_bundle`: a damaged or mixed bundle is one ConfigError line naming the file.
    """
    from safetensors.torch import load_model

    from cloudseg.models import build_model

    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    config = check_bundle(directory)
    try:
        model = build_model(config.model)
    except ConfigError as err:  # say which file the offending model section came from
        raise ConfigError(f"{directory / CONFIG_FILE}: {err}") from None
    try:
        load_model(model, weights, strict=True, device=device)
    except RuntimeError as err:  # shape or key mismatch between config and weights
        name = config.model.name
        detail = " ".join(str(err).split())
        raise ConfigError(f"{weights}: weights do not fit model {name!r}: {detail}") from None
    except Exception as err:  # SafetensorError: damaged past the header
        raise _unreadable(weights, err) from None
    return model.to(device).eval(), config

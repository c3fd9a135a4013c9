"""Typed, frozen run configuration, validated once at the edge.

`RunConfig` is the one format shared by `cloudseg train CONFIG.yaml`, the sweep objective and the
`config.yaml` that `sweep best --export` writes. Unknown keys are errors; messages name the file
and the dotted field path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloudseg.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    """Which patches a run sees and how they are served."""

    root: Path | None = None  # 38-Cloud/95-Cloud root; may come from --data or CLOUDSWEEP_DATA
    cache_dir: Path | None = None  # packed cache location; default chosen by cloudseg.data.cache
    val_fraction: float = Field(0.2, gt=0, lt=1)  # fraction of *scenes* held out for validation
    split_seed: int = 0  # fixed across trials so every trial is scored on the same scenes
    train_fraction: float = Field(0.5, gt=0, le=1)  # resampled subset of the training patches
    subset_seed: int = 0  # the sweep redraws this per trial
    drop_empty: bool = False  # skip patches that are all no-data
    crop: int | None = Field(None, ge=32, le=384)  # random crop side for training (None = 384)
    augment: bool = True  # flips / rot90, identical on image and mask
    include_additional: bool = True  # 95-Cloud's additional training folders when present
    max_val_patches: int | None = Field(None, ge=1)  # cap the validation set (CPU demo, tests)
    # Keep the trial's patches on the training device and batch/augment there: "auto" on CUDA
    # when they fit in half the free memory, "always" (also on the CPU), "never" (DataLoader).
    on_device: Literal["auto", "always", "never"] = "auto"
    device_share: float = Field(1.0, gt=0, le=1)  # of the GPU: several runs may share one


class ModelConfig(_Frozen):
    """Which network, its encoder (smp models) or base width (the from-scratch U-Nets)."""

    name: str = "unet"  # a cloudseg.models.MODELS entry
    encoder: str = "resnet34"  # smp encoder (ignored by the from-scratch models)
    base_width: int | None = Field(None, ge=4)  # from-scratch models: channels of the first stage


class LossConfig(_Frozen):
    """A loss and its parameters; which parameters a loss accepts is declared in its registry
    entry and checked there, so one message names the loss, the field and the value.
    """

    name: str = "bce"  # a cloudseg.losses.LOSSES entry
    pos_weight: float | Literal["auto"] | None = None  # weighted-bce; "auto" = background/cloud
    gamma: float | None = None  # focal, focal-tversky
    alpha: float | None = None  # focal (class weight); tversky (FP weight)
    beta: float | None = None  # tversky (FN weight)
    focal_weight: float | None = None  # mixed-focal: a in a*focal + b*dice
    dice_weight: float | None = None  # mixed-focal: b


class OptimConfig(_Frozen):
    """Optimiser, batch size and learning-rate schedule."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(8, ge=1)
    schedule: Literal["cosine", "constant", "onecycle"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)


class TrainConfig(_Frozen):
    """How the loop runs: epochs, device, precision, input scaling and the best-epoch metric."""

    epochs: int = Field(5, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # used on CUDA only (bf16 where supported, else fp16 + scaler)
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the model, CUDA only (the plain weights are saved)
    normalisation: Literal["max", "band-stats"] = "max"  # uint16 → float: /65535 or per-band z
    band_mean: tuple[float, float, float, float] | None = None  # filled in when band-stats
    band_std: tuple[float, float, float, float] | None = None
    threshold: float = Field(0.5, gt=0, lt=1)  # probability threshold for metrics
    # Which validation pixels the metrics count: True, the footprint (pixels whose four bands
    # are 0 left out: margins and padding); False, every pixel of every patch (padding too);
    # "padding", the 38-Cloud protocol's set: every pixel of the scene's extent, margins
    # included, grid padding left out (needs val_metric "scene" and Entire_scene_gts sizes).
    ignore_nodata: bool | Literal["padding"] = True
    num_workers: int = Field(0, ge=0)  # DataLoader workers (at most the cores the run owns)
    # torch intra-op threads (None: torch's default, one per core). A sweep records the count
    # its trial ran with, so `cloudseg train` of an exported config runs the same way.
    threads: int | None = Field(None, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)  # CPU demo and tests
    # What picks the best epoch: IoU pooled over validation patches, or the 38-Cloud figure,
    # IoU per whole validation scene averaged over scenes (cloudseg.scenes.metrics; validation
    # then runs on every whole 384 px patch of the held-out scenes, data.max_val_patches unset).
    val_metric: Literal["patch", "scene"] = "patch"
    # At which threshold that metric picks the best epoch: `threshold` above ("fixed"), the
    # benchmark's 12/255 ("official") or the epoch's best edge on validation ("tuned").
    select_at: Literal["fixed", "official", "tuned"] = "fixed"

    @model_validator(mode="after")
    def _stats_complete(self) -> TrainConfig:
        if (self.band_mean is None) != (self.band_std is None):
            raise ValueError("band_mean and band_std must be given together")
        return self


class RunConfig(_Frozen):
    """Everything one training run needs; the YAML format of `cloudseg train`."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON types (paths as strings), as its YAML holds it."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: Mapping[str, Any], source: str = "config") -> RunConfig:
        """A copy with dotted fields replaced (`{"loss.gamma": 2.0, "data.root": "/d"}`), the
        touched sections validated again; an unknown field or a bad value is a ConfigError
        naming `source` and the dotted field. Fields set before stay set (a partial config, like
        a spec's `fixed`, stays partial), so `model_dump(exclude_unset=True)` shows both.
        """
        touched: dict[str, dict[str, Any]] = {}
        for path, value in overrides.items():
            section, _, field = path.partition(".")
            current = getattr(self, section, None) if field else None
            if not isinstance(current, BaseModel):
                raise ConfigError(f"{source}: {path}: not a run-config field (section.field)")
            kept = {k: getattr(current, k) for k in current.model_fields_set}
            touched.setdefault(section, kept)[field] = value
        sections: dict[str, Any] = {k: getattr(self, k) for k in self.model_fields_set}
        try:
            return type(self).model_validate({**sections, **touched})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, source)) from None

    def to_yaml(self) -> str:
        """The YAML that `load_run_config` reads back to an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: `source: field.path: message (got value)`."""
    return format_errors(err.errors(), source)


def format_errors(errors: Iterable[Any], source: str) -> str:
    """`format_validation_error` for pydantic's error dicts (a caller may rewrite their `loc`)."""
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        suffix = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{source}: {loc}: {msg}{suffix}")
    return "; ".join(lines)


def parse_run_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a plain mapping (from YAML or a sweep) into a RunConfig, or raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate a run config YAML; every error is one ConfigError naming the file."""
    from cloudseg.yaml_io import read_yaml

    return parse_run_config(read_yaml(path, "run config"), str(path))

"""cloudseg: cloud segmentation for Landsat 8 (38-Cloud / 95-Cloud) as a plain library.

It never imports the sweep layer, optuna, wandb or typer. This module is its public API: users
(and `sweep`) import names from `cloudseg`, not from its files. Heavy modules (torch, numpy) load
on first use of one of their names, so `import cloudseg` stays cheap.

No public name equals a submodule's name: importing `cloudseg.x` makes `x` an attribute of this
package, which would then shadow a lazily exported `x` (tests/test_public_api.py checks it).
"""

from typing import Any

from cloudseg.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    format_errors,
    format_validation_error,
    load_run_config,
    parse_run_config,
)
from cloudseg.cores import available_cores, loader_workers
from cloudseg.errors import (
    CacheError,
    CloudsegError,
    ConfigError,
    DiskFullError,
    DivergedError,
    EnvironmentFault,
    LayoutError,
    OutOfMemoryError,
    TrainingError,
    bug_line,
    debug_enabled,
    one_line,
)
from cloudseg.registry import Registry
from cloudseg.yaml_io import read_yaml

__all__ = [
    "CacheError",
    "CloudsegError",
    "ConfigError",
    "DataConfig",
    "DiskFullError",
    "DivergedError",
    "EnvironmentFault",
    "LayoutError",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "OutOfMemoryError",
    "Registry",
    "RunConfig",
    "TrainConfig",
    "TrainingError",
    "available_cores",
    "bug_line",
    "debug_enabled",
    "format_errors",
    "format_validation_error",
    "load_run_config",
    "loader_workers",
    "one_line",
    "parse_run_config",
    "read_yaml",
]

# Name → the module that defines it, imported on first use of the name (PEP 562), so
# `import cloudseg` (and `cloudseg --help`, `sweep --help`) never imports torch.
_LAZY = {
    # registries: what models and losses exist, and their checks
    "MODELS": "cloudseg.models",
    "PAPER_WIDTH": "cloudseg.models",
    "IN_CHANNELS": "cloudseg.models",
    "CLASSES": "cloudseg.models",
    "smp_class_name": "cloudseg.models",
    "build_model": "cloudseg.models",
    "check_encoder": "cloudseg.models",
    "check_input_size": "cloudseg.models",
    "model_imports": "cloudseg.models",
    "LOSSES": "cloudseg.losses",
    "LOSS_PARAMS": "cloudseg.losses",
    "build_loss": "cloudseg.losses",
    "check_loss_config": "cloudseg.losses",
    "smp_losses": "cloudseg.smp_loss_classes",
    "resolve_loss_params": "cloudseg.losses",
    # data
    "PatchDataset": "cloudseg.data",
    "PatchCache": "cloudseg.data",
    "compute_stats": "cloudseg.data",
    "subset_moments": "cloudseg.data",
    "find_layout": "cloudseg.data",
    "open_cache": "cloudseg.data",
    "resample": "cloudseg.data",
    "split_by_scene": "cloudseg.data",
    "write_synthetic": "cloudseg.data",
    "panel_for": "cloudseg.data.panel",
    "normalise": "cloudseg.normalisation",
    "nodata_mask": "cloudseg.normalisation",
    # training
    "build_run": "cloudseg.training.build",
    "open_run_cache": "cloudseg.training.build",
    "BuiltRun": "cloudseg.training.build",
    "run_training": "cloudseg.training.build",
    "fit": "cloudseg.training.loop",
    "seed_everything": "cloudseg.training.loop",
    "validate": "cloudseg.training.epoch",
    "StepInfo": "cloudseg.training.epoch",
    "Callback": "cloudseg.training.callbacks",
    "Checkpoint": "cloudseg.training.callbacks",
    "EpochRecord": "cloudseg.training.results",
    "RULE_SUFFIX": "cloudseg.training.thresholds",
    "FitResult": "cloudseg.training.results",
    # bundles
    "DIGEST_KEY": "cloudseg.training.checkpoint",
    "check_bundle": "cloudseg.training.checkpoint",
    "file_sha256": "cloudseg.training.checkpoint",
    "load_bundle": "cloudseg.training.checkpoint",
    "save_bundle": "cloudseg.training.checkpoint",
    "bundle_yaml": "cloudseg.training.checkpoint",
    # scenes
    "predict_scenes": "cloudseg.scenes.predict",
    "WindowPredictor": "cloudseg.scenes.inference",
    "evaluate_scenes": "cloudseg.scenes.evaluate",
    "OFFICIAL_THRESHOLD": "cloudseg.scenes.evaluate",
    "SCENE_METRICS": "cloudseg.scenes.evaluate",
    "load_reference": "cloudseg.scenes.reference",
    "compare_with_reference": "cloudseg.scenes.reference",
    "Comparison": "cloudseg.scenes.reference",
    "EvaluationReport": "cloudseg.scenes.evaluate",
    "binarise": "cloudseg.scenes.sources",
    "open_raster": "cloudseg.scenes.geotiff",
    "cloudnet_scene_ids": "cloudseg.scenes.reference",
    "SceneMeter": "cloudseg.scenes.metrics",
    # the installed version (what `cloudseg --version` and `sweep --version` print)
    "package_version": "cloudseg.cli",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cloudseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

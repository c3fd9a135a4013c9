"""cloudseg: cloud segmentation for Landsat 8 (38-Cloud / 95-Cloud) as a plain library.

It never imports the sweep layer, optuna, wandb or typer. Heavy modules (torch) load lazily, so
`import cloudseg` stays cheap.
"""

from cloudseg.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    load_run_config,
    parse_run_config,
)
from cloudseg.errors import (
    CacheError,
    CloudsegError,
    ConfigError,
    DivergedError,
    LayoutError,
    OutOfMemoryError,
    TrainingError,
)

__all__ = [
    "CacheError",
    "CloudsegError",
    "ConfigError",
    "DataConfig",
    "DivergedError",
    "LayoutError",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "OutOfMemoryError",
    "RunConfig",
    "TrainConfig",
    "TrainingError",
    "load_run_config",
    "parse_run_config",
]

# Torch-backed entry points load on first use, so `import cloudseg` (and `cloudseg --help`)
# never imports torch.
_LAZY = {
    "fit": "cloudseg.training.loop",
    "run_training": "cloudseg.training.build",
    "load_bundle": "cloudseg.training.checkpoint",
    "save_bundle": "cloudseg.training.checkpoint",
    "predict_scenes": "cloudseg.scenes.predict",
    "evaluate_scenes": "cloudseg.scenes.evaluate",
    "SceneMeter": "cloudseg.scenes.metrics",
}
__all__ += sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cloudseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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

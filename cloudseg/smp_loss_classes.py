"""segmentation_models_pytorch's loss classes without the rest of smp.

`import segmentation_models_pytorch.losses` first runs smp's package `__init__`, which imports
every encoder: timm, torchvision and torch._dynamo (2.4 s of CPU on this machine, more than
torch itself). Its `losses` subpackage needs only torch and numpy, so when smp is not loaded
already it is loaded here on its own, from smp's installed files, under a private name: a
trial that trains a from-scratch U-Net starts without the encoder zoo, and the classes are
smp's own code, unchanged. Once smp is imported (an smp model), smp's own module is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

_PRIVATE = "cloudseg._smp_losses"


def smp_losses() -> ModuleType:
    """The `segmentation_models_pytorch.losses` module (or the same files loaded alone)."""
    if "segmentation_models_pytorch" in sys.modules:
        return importlib.import_module("segmentation_models_pytorch.losses")
    if _PRIVATE in sys.modules:
        return sys.modules[_PRIVATE]
    package = importlib.util.find_spec("segmentation_models_pytorch")  # located, not run
    if package is None or not package.submodule_search_locations:
        raise ImportError("segmentation_models_pytorch is not installed")
    folder = f"{list(package.submodule_search_locations)[0]}/losses"
    spec = importlib.util.spec_from_file_location(
        _PRIVATE, f"{folder}/__init__.py", submodule_search_locations=[folder]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load smp's losses from {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PRIVATE] = module  # before running it: its relative imports look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PRIVATE]
        raise
    return module

"""Post-trial hooks: callbacks every worker runs after each finished trial (the W&B mirror).

A hook module registers a factory under a name; `sweep run` passes the enabled hooks with their
options to every worker (in-process or subprocess), which builds them with `build_hooks`:

    from sweep.hooks import HOOKS

    @HOOKS.register("wandb")
    def make_mirror(study: optuna.Study, options: dict) -> Callable[[Study, FrozenTrial], None]:
        ...

A hook must never raise into the study: `build_hooks` wraps each one so an exception is logged
once and the sweep goes on.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from cloudseg.registry import Registry

HookFactory = Callable[[Any, dict[str, Any]], Callable[[Any, Any], None]]
HOOKS: Registry[HookFactory] = Registry("post-trial hook")
HOOK_MODULES = ("sweep.mirror",)  # imported on demand; each registers its hooks on import
_log = logging.getLogger("sweep.hooks")


def _load_modules() -> None:
    for module in HOOK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def available_hooks() -> list[str]:
    _load_modules()
    return HOOKS.names()


def build_hooks(
    study, enabled: dict[str, dict[str, Any]] | None
) -> list[Callable[[Any, Any], None]]:
    """Instantiate the enabled hooks (name → options) for `study`, each wrapped to never raise."""
    if not enabled:
        return []
    _load_modules()
    return [
        _guarded(name, HOOKS.get(name)(study, options or {}))
        for name, options in enabled.items()
    ]


def _guarded(name: str, hook: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    warned = []

    def call(study, trial) -> None:
        try:
            hook(study, trial)
        except Exception as err:  # noqa: BLE001 - a hook must never stop a sweep
            if not warned:
                _log.warning("post-trial hook %s failed (%s); the sweep goes on", name, err)
                warned.append(True)

    return call

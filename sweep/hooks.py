"""Post-trial hooks: callbacks every worker runs after each finished trial (the W&B mirror).

Each hook is a factory registered here under a name (the registry is the table of contents;
the factory imports its module only when a run enables it); `sweep run` passes the enabled hooks
with their options to every worker (in-process or subprocess), which builds them with
`build_hooks`.

A hook must never raise into the study: `build_hooks` wraps each one so an exception is logged
once and the sweep goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cloudseg.registry import Registry

HookFactory = Callable[[Any, dict[str, Any]], Callable[[Any, Any], None]]
HOOKS: Registry[HookFactory] = Registry("post-trial hook")
_log = logging.getLogger("sweep.hooks")


@HOOKS.register("wandb")
def _wandb(study, options: dict[str, Any]):
    """`sweep run --wandb MODE`: the W&B mirror, uploading from a background process."""
    from sweep.mirror.background import wandb_hook

    return wandb_hook(study, options)


def available_hooks() -> list[str]:
    return HOOKS.names()


def build_hooks(
    study, enabled: dict[str, dict[str, Any]] | None
) -> list[Callable[[Any, Any], None]]:
    """Instantiate the enabled hooks (name → options) for `study`, each wrapped to never raise."""
    if not enabled:
        return []
    return [
        _guarded(name, HOOKS.get(name)(study, options or {}))
        for name, options in enabled.items()
    ]


class _Guarded:
    """A hook that never raises into the study; `close()` is forwarded when the hook has one."""

    def __init__(self, name: str, hook: Callable[[Any, Any], None]):
        self.name, self.hook, self.warned = name, hook, False

    def _warn(self, err: Exception) -> None:
        if not self.warned:
            _log.warning("post-trial hook %s failed (%s); the sweep goes on", self.name, err)
            self.warned = True

    def __call__(self, study, trial) -> None:
        try:
            self.hook(study, trial)
        except Exception as err:  # noqa: BLE001 - a hook must never stop a sweep
            self._warn(err)

    def close(self) -> None:
        close = getattr(self.hook, "close", None)
        if close is not None:
            try:
                close()
            except Exception as err:  # noqa: BLE001
                self._warn(err)


def _guarded(name: str, hook: Callable[[Any, Any], None]) -> _Guarded:
    return _Guarded(name, hook)


def close_hooks(hooks: list) -> None:
    """Let each hook finish its pending work (e.g. the mirror's uploads) when a worker ends."""
    for hook in hooks:
        if hasattr(hook, "close"):
            hook.close()

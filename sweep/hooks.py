"""Post-trial hooks: callbacks every worker runs after each finished trial (the W&B mirror).

Each hook is a factory registered here under a name with the pydantic model of its options
(the registry is the table of contents; the factory imports its module only when a run enables
it); `sweep run` passes the enabled hooks with their typed options to every worker (in-process,
or to a worker process as `encode_hooks` text, typed again by `decode_hooks`), which builds them
with `build_hooks`.

A hook must never raise into the study: `build_hooks` wraps each one so an exception is logged
once and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cloudseg import Registry, format_validation_error
from sweep.errors import SweepError
from sweep.mirror.options import MirrorOptions

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from sweep.mirror.background import BackgroundMirror

PostTrial = Callable[[Any, Any], None]


@dataclass(frozen=True)
class Hook:
    """A post-trial hook: its factory `(study, options) -> callable`, and the pydantic model of
    its options (None: the options are passed as given, e.g. a test's own hook).
    """

    build: Callable[[Any, Any], PostTrial]
    options: type[BaseModel] | None = None


HOOKS: Registry[Hook] = Registry("post-trial hook")
_log = logging.getLogger("sweep.hooks")


def _wandb(study: optuna.Study, options: MirrorOptions) -> BackgroundMirror:
    """`sweep run --wandb MODE`: the W&B mirror, uploading from a background process."""
    from sweep.mirror.background import wandb_hook

    return wandb_hook(study, options)


HOOKS.add("wandb", Hook(_wandb, MirrorOptions))


def available_hooks() -> list[str]:
    """The names post-trial hooks are registered under."""
    return HOOKS.names()


def typed_options(name: str, options: Any) -> Any:
    """`options` as hook `name` takes them: its options model (validated once, here)."""
    model = HOOKS.get(name).options
    if model is None or isinstance(options, model):
        return options
    try:
        return model.model_validate(options or {})
    except ValidationError as err:
        raise SweepError(format_validation_error(err, f"hook {name}")) from None


def encode_hooks(enabled: Mapping[str, Any]) -> str:
    """The enabled hooks for a worker process's command line (`decode_hooks` reads them)."""
    return json.dumps({
        name: opts.model_dump(mode="json") if isinstance(opts, BaseModel) else opts
        for name, opts in enabled.items()
    })


def decode_hooks(text: str) -> dict[str, Any]:
    """`encode_hooks`'s text back into each hook's typed options."""
    return {name: typed_options(name, opts) for name, opts in json.loads(text).items()}


def build_hooks(
    study: optuna.Study, enabled: Mapping[str, Any] | None, storage_url: str
) -> list[PostTrial]:
    """Instantiate the enabled hooks (name → options) for `study`, each wrapped to never raise.

    Options with a `storage` field left unset get `storage_url`, the worker's: an optuna Study
    has no public getter for its storage.
    """
    if not enabled:
        return []
    return [
        _guarded(name, HOOKS.get(name).build(study, _with_storage(
            typed_options(name, options), storage_url)))
        for name, options in enabled.items()
    ]


class _Guarded:
    """A hook that never raises into the study; `close()` is forwarded when the hook has one."""

    def __init__(self, name: str, hook: Callable[[Any, Any], None]) -> None:
        self.name, self.hook, self.warned = name, hook, False

    def _warn(self, err: Exception) -> None:
        if not self.warned:
            _log.warning("post-trial hook %s failed (%s); the sweep goes on", self.name, err)
            self.warned = True

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Run the hook; its first exception is logged, every one is swallowed."""
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


def _with_storage(options: Any, storage_url: str) -> Any:
    """Typed options whose `storage` is unset, with the worker's storage URL filled in."""
    if isinstance(options, BaseModel) and "storage" in type(options).model_fields \
            and getattr(options, "storage", None) is None:
        return options.model_copy(update={"storage": storage_url})
    return options


def close_hooks(hooks: list) -> None:
    """Let each hook finish its pending work (e.g. the mirror's uploads) when a worker ends."""
    for hook in hooks:
        if hasattr(hook, "close"):
            hook.close()

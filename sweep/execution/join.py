"""`sweep worker --study NAME|PATH`: every machine runs the same command. The study is joined
when the storage has it, else created from its spec; every input is checked before the storage
is written (runner.prepare), and creation is safe for many workers at once (runner.create_study
writes `spec` last; joiners wait for it in workers).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudseg import ConfigError
from sweep.errors import SpecError
from sweep.execution.runner import create_study, prepare
from sweep.storage import check_storage_url, open_storage, redact, sqlite_path, stored_attrs


def join_or_create(study: str, storage_url: str, *, trials: int | None,
                   data: str | Path | None, overrides: Sequence[str] = (),
                   resume: bool = False) -> str:
    """The name of the study a worker joins (`--study NAME|PATH`), created from its spec (with
    `overrides`, `--set KEY=VALUE`) when the storage lacks it. Every input is checked before
    the storage is written. `resume`: a study halted by its failures takes trials again.
    """
    name = _join_or_create(study, storage_url, trials=trials, data=data, overrides=overrides)
    if resume:
        import optuna

        from sweep.execution.halt import clear_halt

        clear_halt(optuna.load_study(study_name=name, storage=open_storage(storage_url)))
    return name


def _join_or_create(study: str, storage_url: str, *, trials: int | None,
                    data: str | Path | None, overrides: Sequence[str]) -> str:
    from sweep.study.spec import available_studies, load_spec

    check_storage_url(storage_url)
    is_path = Path(study).suffix in (".yaml", ".yml") or Path(study).exists()
    spec = load_spec(study, overrides) if is_path or study in available_studies() else None
    if spec is None and overrides:
        raise SpecError(f"--set: {study!r} names no spec file to change (specs: "
                        f"{', '.join(available_studies()) or 'none'})")
    name = spec.name if spec else study
    attrs = _attrs_if_any(storage_url, name)
    if attrs is not None and "spec" in attrs:
        if spec is not None and attrs["spec"] != spec.to_dict():
            print(f"note: study {name!r} exists; its stored spec is used, not {spec.source}",
                  file=sys.stderr)
        return name
    if spec is None:
        return name  # sweep.execution.workers waits for a creator to finish, else names the choices
    if trials is None:
        raise ConfigError(f"study {name!r} does not exist yet in {redact(storage_url)}: "
                          "give --trials N (the study-wide target) to create it")
    root = prepare(spec, trials, storage_url, data)
    create_study(spec, trials, storage_url, root, overwrite=False)
    return name


def _attrs_if_any(storage_url: str, name: str) -> dict[str, Any] | None:
    path = sqlite_path(storage_url)
    if path is not None and not path.exists():
        return None  # nothing to read: do not create the file just to look
    return stored_attrs(open_storage(storage_url), name)

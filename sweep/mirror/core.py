"""A mirror pass: finished trials to Weights & Biases, one run per trial, idempotent, offline-first.

The study storage is the source of truth. A pass reads the finished trials, compares them with
the mirror table (sweep.mirror.state) and uploads only what is missing or changed, so
`sweep mirror --study S` can run any time, on any machine. Each trial gets a stable run id;
re-mirroring resumes that run (`resume="allow"`), never a duplicate. Without an API key, or
with mode "offline", runs are written as offline folders that `wandb sync DIR` uploads later.

wandb is imported inside the functions that upload, never at import time. The API key is read
only by wandb itself; it never reaches the storage, the table or our messages.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial

from cloudseg import ConfigError
from sweep.mirror.payload import (
    MIRRORED_STATES,
    content_hash,
    redact,
    trial_payload,
    trial_run_id,
)
from sweep.mirror.state import STUDY_ROW, MirrorRecord, MirrorState
from sweep.mirror.sync_hint import sync_hint
from sweep.mirror.upload import (
    Mode,
    RunMode,
    resolve_mode,
    upload_study_summary,
    upload_trial,
)

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

MAX_CONSECUTIVE_FAILURES = 3  # then W&B is taken to be down: stop the pass, keep the rest


@dataclass
class MirrorReport:
    """What one pass did; `str()` is the CLI's one-line answer."""

    study_name: str
    mode: str
    mirrored: list[int] = field(default_factory=list)
    up_to_date: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # trial number → redacted error
    summary_run: str | None = None
    aborted: bool = False  # stopped after MAX_CONSECUTIVE_FAILURES errors in a row
    wandb_dir: str | None = None
    run_dirs: list[str] = field(default_factory=list)  # the offline run folders written

    @property
    def ok(self) -> bool:
        """Whether every trial went up and the pass ran to its end."""
        return not self.failed and not self.aborted

    def __str__(self) -> str:
        text = (
            f"study {self.study_name!r} ({self.mode}): {len(self.mirrored)} mirrored, "
            f"{len(self.up_to_date)} up to date, {len(self.failed)} failed"
        )
        if self.aborted:
            text += "; W&B kept failing, stopped early: run `sweep mirror` again later"
        hint = sync_hint(self.run_dirs) if self.mode == "offline" else None
        if hint:
            text += f"; {hint}"
        return text


def storage_url(storage: str | BaseStorage) -> str:
    """The database URL behind a storage: a URL, or an RDBStorage (its public `url`)."""
    if isinstance(storage, str):
        return storage
    url = getattr(storage, "url", None)
    if isinstance(url, str):
        return url
    raise TypeError(
        f"the W&B mirror needs an RDB storage (a database URL or an RDBStorage); got "
        f"{type(storage).__name__}"
    )


def open_storage(storage: str | BaseStorage) -> BaseStorage:
    """A storage as given, or the project's reader for a URL (sweep.storage: the same SQLite
    locking and server timeouts as the workers, and nothing created in an empty database).
    """
    if not isinstance(storage, str):
        return storage
    from sweep.storage import read_storage

    return read_storage(storage)


def _finished_trials(
    storage: str | BaseStorage, study_name: str
) -> tuple[list[FrozenTrial], str | None]:
    """The study's finished trials by number and its `artifact_dir` user attr."""
    store = open_storage(storage)
    try:
        try:
            study_id = store.get_study_id_from_name(study_name)
        except KeyError:
            names = ", ".join(sorted(s.study_name for s in store.get_all_studies())) or "none"
            raise ConfigError(
                f"no study {study_name!r} in the storage; available: {names}"
            ) from None
        trials = store.get_all_trials(study_id, deepcopy=False, states=MIRRORED_STATES)
        attrs = store.get_study_user_attrs(study_id)
        return sorted(trials, key=lambda t: t.number), attrs.get("artifact_dir")
    finally:
        if store is not storage and isinstance(store, RDBStorage):  # opened here from a URL
            store.engine.dispose()  # release its connections


def study_artifact_store(folder: str | None) -> FileSystemArtifactStore | None:
    """The study's artifact store from its `artifact_dir` user attr (the runner records it),
    or None when that folder is not on this machine (runs then go up without images).
    """
    if not folder or not Path(folder).is_dir():
        return None
    from optuna.artifacts import FileSystemArtifactStore

    return FileSystemArtifactStore(str(folder))


def _study_hash(trials: list[FrozenTrial]) -> str:
    import hashlib

    blob = "|".join(f"{t.number}:{content_hash(t)}" for t in trials).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def mirror_study(
    storage: str | BaseStorage,
    study_name: str,
    *,
    mode: Mode = "auto",
    wandb_dir: Path | None = None,
    project: str = "cloudsweep",
    entity: str | None = None,
    artifact_store: FileSystemArtifactStore | None = None,
    trials: list[int] | None = None,
    summary: bool = True,
    force: bool = False,
) -> MirrorReport:
    """Upload every finished trial of the study that the mirror table lacks (or that changed).

    `artifact_store` None means the study's own (`artifact_dir` user attr), for the overlays.
    `trials` limits the pass to some numbers; `summary=False` skips the study table run;
    `force` re-mirrors everything. W&B errors are caught per trial and reported, never raised;
    an unknown study raises ConfigError naming the studies there are.
    """
    resolved = resolve_mode(mode)
    report = MirrorReport(study_name, resolved, wandb_dir=str(wandb_dir) if wandb_dir else None)
    if resolved == "off":
        return report
    finished, artifact_dir = _finished_trials(storage, study_name)
    if artifact_store is None:
        artifact_store = study_artifact_store(artifact_dir)
    host = socket.gethostname()
    with MirrorState(storage_url(storage)) as state:
        salt = state.study_salt(study_name)
        done = {} if force else state.all(study_name)
        streak = 0
        for trial in finished:
            if trials is not None and trial.number not in trials:
                continue
            digest = content_hash(trial)
            if trial.number in done and done[trial.number].satisfies(digest, resolved):
                report.up_to_date.append(trial.number)
                continue
            try:
                path, run_dir = upload_trial(
                    trial_payload(trial, study_name, salt),
                    resolved,
                    project=project,
                    entity=entity,
                    wandb_dir=wandb_dir,
                    artifact_store=artifact_store,
                )
            except Exception as exc:  # W&B down, disk full, ...: keep going, report it
                report.failed[trial.number] = redact(f"{type(exc).__name__}: {exc}")[:500]
                streak += 1
                if streak >= MAX_CONSECUTIVE_FAILURES:
                    report.aborted = True
                    break
                continue
            streak = 0
            if run_dir:
                report.run_dirs.append(str(run_dir))
            state.record(
                study_name,
                trial.number,
                run_path=path,
                content_hash=digest,
                mode=resolved,
                run_dir=run_dir,
                host=host,
                run_id=trial_run_id(study_name, salt, trial.number),
            )
            report.mirrored.append(trial.number)
        if summary and not report.aborted and finished:
            _mirror_summary(
                state,
                study_name,
                salt,
                finished,
                resolved,
                report,
                force,
                project=project,
                entity=entity,
                wandb_dir=wandb_dir,
                host=host,
            )
    return report


def _mirror_summary(
    state: MirrorState,
    study_name: str,
    salt: str,
    finished: list[FrozenTrial],
    mode: RunMode,
    report: MirrorReport,
    force: bool,
    *,
    host: str,
    **where: Any,
) -> None:
    digest = _study_hash(finished)
    row = state.get(study_name, STUDY_ROW)
    if row and row.satisfies(digest, mode) and not force:
        report.summary_run = row.run_path
        return
    try:
        path, run_dir = upload_study_summary(study_name, salt, finished, mode, **where)
    except Exception as exc:
        report.failed[STUDY_ROW] = redact(f"{type(exc).__name__}: {exc}")[:500]
        return
    if run_dir:
        report.run_dirs.append(str(run_dir))
    state.record(
        study_name,
        STUDY_ROW,
        run_path=path,
        content_hash=digest,
        mode=mode,
        run_dir=run_dir,
        host=host,
    )
    report.summary_run = path


def mirrored_runs(storage: str | BaseStorage, study_name: str) -> dict[int, MirrorRecord]:
    """Trial number → its mirror record (run path, mode, local folder): the `wandb_run` of each
    finished trial, which Optuna 5 no longer lets anyone add to a finished trial's attrs.
    """
    with MirrorState(storage_url(storage)) as state:
        return state.all(study_name)


def planned_run_path(
    storage: str | BaseStorage, study_name: str, trial_number: int, project: str = "cloudsweep"
) -> str:
    """`project/run_id` of a trial's future run, for the objective to store as the `wandb_run`
    user attr while the trial is still running (the id never changes; the entity is W&B's).
    """
    with MirrorState(storage_url(storage)) as state:
        return f"{project}/{trial_run_id(study_name, state.study_salt(study_name), trial_number)}"


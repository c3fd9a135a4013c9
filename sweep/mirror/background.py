"""Mirror trials while the sweep runs, without ever blocking, slowing or failing a trial.

`BackgroundMirror` owns one worker — by default a separate process, so W&B's one-active-run
rule, its console hooks and a hung upload stay out of the sweep — fed through a queue.
`submit()` only enqueues. The worker mirrors the submitted trials; a W&B error is logged once
and left for the next pass, and `close()` retries this mirror's failed trials and writes the
study summary run before the worker stops. A worker still busy at the close timeout is
stopped: what it had not finished stays missing in the mirror table for `sweep mirror`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage

from sweep.mirror.core import Mode, mirror_study, open_storage, resolve_mode, storage_url
from sweep.mirror.options import MirrorOptions
from sweep.mirror.payload import redact

if TYPE_CHECKING:
    from multiprocessing.queues import Queue as ProcessQueue

    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
_STOP = None
STORAGE_ERROR = -2  # key in `failed` when the pass could not even read the study


@dataclass(frozen=True)
class _Target:
    """Everything the worker needs; picklable when `storage` is a URL (process isolation)."""

    storage: Any
    mode: Mode
    wandb_dir: Path | None
    project: str
    entity: str | None
    artifact_store: Any


def _serve(
    target: _Target,
    jobs: queue.Queue[Any] | ProcessQueue[Any],
    events: queue.Queue[Any] | ProcessQueue[Any],
) -> None:
    """The worker loop: batch what is queued, mirror it, report back, never raise."""
    storage = None
    seen: dict[str, set[int]] = {}

    def one_pass(study: str, numbers: list[int] | None, summary: bool) -> None:
        nonlocal storage
        try:
            storage = storage or open_storage(target.storage)
            report = mirror_study(
                storage,
                study,
                mode=target.mode,
                wandb_dir=target.wandb_dir,
                project=target.project,
                entity=target.entity,
                artifact_store=target.artifact_store,
                trials=numbers,
                summary=summary,
            )
            events.put(("report", study, report.mirrored, report.failed))
        except Exception as exc:  # the storage itself failed: same treatment as W&B failing
            error = redact(f"{type(exc).__name__}: {exc}")[:500]
            events.put(("report", study, [], {STORAGE_ERROR: error}))

    while True:
        batch = [jobs.get()]
        while True:
            try:
                batch.append(jobs.get_nowait())
            except queue.Empty:
                break
        wanted: dict[str, list[int]] = {}
        for item in batch:
            if item is not _STOP:
                wanted.setdefault(item[0], []).append(item[1])
        for study, numbers in wanted.items():
            seen.setdefault(study, set()).update(numbers)
            one_pass(study, sorted(set(numbers)), summary=False)
        if _STOP in batch:
            # Retry this mirror's own trials that failed earlier (the table skips the rest),
            # then the study table. Other workers' trials are theirs or `sweep mirror`'s.
            for study, tried in sorted(seen.items()):
                one_pass(study, sorted(tried), summary=True)
            events.put(("stopped",))
            return


class BackgroundMirror:
    """`submit(study, trial_number)` after each trial; `close()` at the end of the sweep.

    Also an Optuna callback: `study.optimize(objective, callbacks=[mirror])`. With mode "off"
    every call is a no-op. `isolation="thread"` keeps the worker in this process (needed for a
    storage object without a URL); "process" is the default.
    """

    def __init__(
        self,
        storage: str | BaseStorage,
        *,
        mode: Mode = "auto",
        wandb_dir: Path | None = None,
        project: str = "cloudsweep",
        entity: str | None = None,
        artifact_store: FileSystemArtifactStore | None = None,
        isolation: str = "process",
        exit_timeout: float = 120.0,
    ) -> None:
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread'; got {isolation!r}")
        self.mode = resolve_mode(mode)
        if isolation == "process":
            try:
                storage = storage_url(storage)
            except TypeError:
                isolation = "thread"  # no URL to reopen in another process
            if mp.current_process().daemon:
                isolation = "thread"  # a daemonic process may not start children
        self.isolation = isolation
        self._target = _Target(storage, self.mode, wandb_dir, project, entity, artifact_store)
        self._worker: mp.process.BaseProcess | threading.Thread | None = None
        self._jobs: Any = None
        self._events: Any = None
        self._lock = threading.Lock()
        self._warned = False
        self._stopped = False
        self._exit_timeout = exit_timeout
        self.mirrored: list[tuple[str, int]] = []
        self.failed: dict[tuple[str, int], str] = {}

    def _start(self) -> None:
        if self.isolation == "process":
            ctx = mp.get_context("spawn")  # no fork of a process holding DB connections/threads
            self._jobs, self._events = ctx.Queue(), ctx.Queue()
            self._worker = ctx.Process(
                target=_serve,
                args=(self._target, self._jobs, self._events),
                name="cloudsweep-wandb-mirror",
                daemon=True,
            )
        else:
            self._jobs, self._events = queue.Queue(), queue.Queue()
            self._worker = threading.Thread(
                target=_serve,
                args=(self._target, self._jobs, self._events),
                name="cloudsweep-wandb-mirror",
                daemon=True,
            )
        self._worker.start()
        # Close at exit if nobody did. Registered after start(), so it runs before
        # multiprocessing's own exit handler, which would terminate the daemonic worker.
        atexit.register(self.close, self._exit_timeout)

    def submit(self, study_name: str, trial_number: int) -> None:
        """Queue a finished trial for mirroring; returns at once and never raises."""
        if self.mode == "off" or self._stopped:
            return
        try:
            with self._lock:
                if self._worker is None:
                    self._start()
                elif not self._worker.is_alive():
                    self._warn_once(
                        "the W&B mirror worker has exited; trials are left for "
                        f"`sweep mirror --study {study_name}`"
                    )
                    return
            self._jobs.put_nowait((study_name, int(trial_number)))
            self._drain_events()
        except Exception as exc:
            self._warn_once(f"the W&B mirror could not queue trial {trial_number}: {exc}")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback signature: (study, frozen_trial)."""
        self.submit(study.study_name, trial.number)

    def close(self, timeout: float = 60.0) -> bool:
        """Finish the queue, retry failures and write the study run within `timeout` s.

        True if everything submitted went up. Idempotent (also registered at exit).
        """
        if self._worker is None or self._stopped:
            self._stopped = True
            return not self.failed
        self._stopped = True
        self._jobs.put_nowait(_STOP)
        deadline = time.monotonic() + timeout
        while self._worker.is_alive() and time.monotonic() < deadline:
            self._worker.join(0.2)
            self._drain_events()  # keep the pipe empty: a full one would stall the worker
        busy = self._worker.is_alive()
        process = self._worker if isinstance(self._worker, mp.process.BaseProcess) else None
        if busy:
            log.warning(
                "W&B mirror still busy after %.0f s: %s; run `sweep mirror` to upload the rest",
                timeout,
                "stopped it" if process is not None else "left it behind",
            )
            if process is not None:
                process.terminate()
                process.join(5)
        elif process is not None and process.exitcode != 0:  # crashed: its work is in the table
            log.warning("W&B mirror worker exited with code %s", process.exitcode)
            busy = True
        clean = not busy
        self._drain_events()
        if self.failed:
            studies = sorted({s for s, _ in self.failed})
            log.warning(
                "W&B mirror: %d trial(s) not uploaded; `sweep mirror --study %s` "
                "uploads them later",
                len(self.failed),
                " / ".join(studies),
            )
        return clean and not self.failed

    def __enter__(self) -> BackgroundMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s (logged once; the sweep goes on)", message)

    def _drain_events(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if event[0] != "report":
                continue
            _, study, mirrored, failed = event
            if STORAGE_ERROR not in failed:  # the storage answered again
                self.failed.pop((study, STORAGE_ERROR), None)
            for number in mirrored:
                self.mirrored.append((study, number))
                self.failed.pop((study, number), None)
            for number, error in failed.items():
                self.failed[(study, number)] = error
            if failed:
                self._warn_once(
                    f"W&B mirror failed for study {study!r}: {next(iter(failed.values()))}"
                )


def wandb_hook(study: optuna.Study, options: MirrorOptions) -> BackgroundMirror:
    """The `wandb` post-trial hook (sweep.hooks): a BackgroundMirror fed after each trial.

    The mirror closes itself at exit; calling `close()` earlier (after `study.optimize`) is
    better and harmless to repeat.
    """
    if options.storage is None:  # an optuna Study has no public getter for its storage
        raise TypeError("wandb_hook: options.storage must be the study's database URL")
    url = storage_url(options.storage)
    store = None  # None: each pass uses the study's `artifact_dir` user attr
    if options.artifact_dir is not None:
        from optuna.artifacts import FileSystemArtifactStore

        store = FileSystemArtifactStore(str(options.artifact_dir))
    return BackgroundMirror(
        url,
        mode=options.mode,
        wandb_dir=options.wandb_dir,
        project=options.project,
        entity=options.entity,
        artifact_store=store,
        isolation=options.isolation,
        exit_timeout=options.close_timeout,
    )

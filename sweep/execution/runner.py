"""run_study: validate everything, create (or resume) the study, run the workers, show progress.

Order matters: the spec, the trial target, the data root and the storage URL are all checked
before anything is created, so a bad input leaves the storage untouched. Then the study records
what its workers need (spec, target, data root, artifact dir, measured pos_weight) as study user
attrs and the workers run: in this process for one worker (Ctrl-C lands in the trial, which is
marked FAILED "interrupted"), as subprocesses for several.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudseg import ConfigError
from sweep.errors import StorageError, StorageUnreachable, WorkerError
from sweep.storage import (
    DEFAULT_STORAGE,
    artifact_dir_for,
    check_storage_url,
    open_storage,
    read_storage,
    stored_attrs,
)
from sweep.study.spec import StudySpec

if TYPE_CHECKING:
    import subprocess

    import optuna
    from optuna.trial import FrozenTrial

    from sweep.execution.progress import LiveView

DATA_ENV = "CLOUDSWEEP_DATA"
DATA_HINT = (
    "point at 38-Cloud with --data /path/to/38-Cloud or `export CLOUDSWEEP_DATA=/path/to/38-Cloud`,"
    " or try the demo on synthetic data: `make demo` (or `cloudseg synth data/synthetic` and "
    "`sweep run --study demo`)"
)


@dataclass(frozen=True)
class RunSummary:
    """What `run_study` reports at the end: the study's counts and best trial."""
    study: str
    storage: str
    target: int
    complete: int
    pruned: int
    failed: int
    best_number: int | None
    best_value: float | None
    lost_workers: tuple[int, ...] = ()  # exit codes of local workers that ended early
    confirmations: int = 0  # complete confirmation runs (not counted in `complete`)
    headline: str = ""  # the best figure: the confirmed leader's once there is one
    search_stopped: str | None = None  # why the search ended before its target (stop_search)


def resolve_data_root(spec: StudySpec, data: str | Path | None) -> Path:
    """--data, then $CLOUDSWEEP_DATA, then the spec's `data`; checked to be a 38-Cloud tree.

    A spec with `synthesize_if_missing` writes a synthetic tree at its own `data` path on first
    use (the demo); a path given by --data or the environment is never written to.
    """
    from cloudseg import find_layout, write_synthetic

    chosen = data or os.environ.get(DATA_ENV) or None
    source = chosen or spec.data
    if source is None:
        raise ConfigError(f"no data set for study {spec.name!r}: {DATA_HINT}")
    root = Path(source).expanduser()
    if chosen is None and spec.synthesize_if_missing and not root.exists():
        # 1100 px scenes: 3 × 3 patches that each hold data (centred padding of 26 px), as
        # 38-Cloud's big scenes mostly do; 800 px ones were 5/9 padding
        write_synthetic(root, train_scenes=6, test_scenes=2, scene_size=(1100, 1100),
                        seed=spec.seed)
    if not root.exists():
        raise ConfigError(f"data root {root} does not exist: {DATA_HINT}")
    find_layout(root)
    return root.resolve()


def measure_pos_weight(spec: StudySpec, root: Path) -> float | None:
    """Background/cloud pixel ratio of the training scenes, when the space searches around it."""
    if not any(p.relative_to == "measured_pos_weight" for p in spec.space.values()):
        return None
    from cloudseg import open_cache, split_by_scene, subset_moments
    from sweep.execution.objective import trial_config

    cfg = trial_config(spec, {}, root, 0).data
    cache = open_cache(root, cache_dir=cfg.cache_dir, include_additional=cfg.include_additional)
    split = split_by_scene(cache.records, cfg.val_fraction, cfg.split_seed)
    ratio = float(subset_moments(cache, split.train).pos_weight)
    return ratio if ratio > 0 and ratio != float("inf") else 1.0


def check_timeout(timeout: float | None) -> None:
    """`--timeout T`: a number of seconds > 0 (not negative, nan or inf), or none."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout {timeout}: expected a number of seconds > 0 "
                          "(leave it out to run until the target)")


def prepare(spec: StudySpec, trials: int, storage: str, data: str | Path | None) -> Path:
    """All checks that must pass before the storage is touched; returns the data root."""
    if trials < 1:
        raise ConfigError(f"--trials must be a positive number of finished trials (got {trials})")
    from sweep.study.spec import grid_size

    points = grid_size(spec)
    if points is not None and trials > points:
        raise ConfigError(f"--trials {trials}: the grid of {spec.source} has {points} point(s) "
                          f"and a grid point never runs twice; give --trials {points} or fewer")
    check_storage_url(storage)
    root = resolve_data_root(spec, data)
    from cloudseg import open_cache, split_by_scene
    from sweep.execution.objective import trial_config

    cfg = trial_config(spec, {}, root, 0).data  # packed once here, not by the first trials
    cache = open_cache(root, cache_dir=cfg.cache_dir, progress=True,
                       include_additional=cfg.include_additional)
    try:  # every trial splits the same way: a tree it rejects must fail here, not in trial 0
        split_by_scene(cache.records, cfg.val_fraction, cfg.split_seed)
    except ConfigError as err:
        raise ConfigError(f"data root {root}: {err}") from None
    return root


def create_study(spec: StudySpec, trials: int, storage_url: str, root: Path, *,
                 overwrite: bool = True) -> optuna.Study:
    """Create or load the study and record what workers need as study user attrs.

    Safe for many processes at once: Optuna creates the study row once (the others load it),
    and `spec` is written last, so a reader that sees `spec` sees everything. Whatever can fail
    (the measured class balance) runs before the row exists. With overwrite=False (a worker
    joining) a study that already has its spec keeps its spec and target.
    """
    import optuna

    storage = open_storage(storage_url)
    existing = stored_attrs(storage, spec.name) or {}
    if not overwrite and "spec" in existing:
        return optuna.load_study(study_name=spec.name, storage=storage)
    if "spec" in existing:  # a rerun: refused before anything is written when the space,
        from sweep.study.resume import check_resumable  # the fixed config... differ

        stored = StudySpec.from_stored(existing["spec"], spec.source).to_dict()
        check_resumable(spec.name, stored, spec.to_dict(), spec.source)
    from sweep.execution.halt import clear_halt

    weight = (existing["measured_pos_weight"] if "measured_pos_weight" in existing
              else measure_pos_weight(spec, root))
    study = optuna.create_study(
        study_name=spec.name, storage=storage, direction=spec.direction, load_if_exists=True
    )
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(f"study {spec.name!r} exists with direction {study.direction.name}")
    if overwrite:  # `sweep run` again: the user's decision to try again after a halt
        clear_halt(study)
    study.set_user_attr("measured_pos_weight", weight)
    if "panel" not in existing:  # fixed once: every trial draws its predictions on it
        from sweep.artifacts import study_panel
        from sweep.execution.objective import trial_config

        panel = study_panel(trial_config(spec, {}, root, 0))
        study.set_user_attr("panel", [dataclasses.asdict(p) for p in panel])
    study.set_user_attr("target", trials)
    study.set_user_attr("data_root", str(root))
    study.set_user_attr("artifact_dir", str(artifact_dir_for(storage_url).resolve()))
    study.set_user_attr("last_run", dt.datetime.now(dt.UTC).isoformat())
    from sweep.records import record_study

    record_study(study, spec)  # dashboard: the metric's name, the spec as a readable note
    study.set_user_attr("spec", spec.to_dict())  # last: its presence means "ready"
    return study


def run_study(
    spec: StudySpec,
    trials: int,
    *,
    storage: str = DEFAULT_STORAGE,
    data: str | Path | None = None,
    workers: int | None = None,
    timeout: float | None = None,
    hooks: Mapping[str, Any] | None = None,  # hook name → its typed options (sweep.hooks)
    progress: bool = True,
) -> RunSummary:
    """Run `spec` until `trials` trials are finished (complete + pruned), study-wide, with
    `workers` local worker processes (default: execution.trials_per_gpu per visible GPU, else
    one).
    """
    from sweep.execution import workers as worker_mod

    check_timeout(timeout)
    per_gpu = spec.execution.trials_per_gpu
    if workers is None:
        workers = worker_mod.default_worker_count(per_gpu)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    if workers == 1 and not _finished_already(spec, storage, trials):
        from sweep.execution.trial_process import warm_up

        # torch loads in the forkserver while the data is checked and the study set up; never
        # for a run with nothing to do (the forkserver ends with this process either way)
        warm_up(spec.model_names)
    root = prepare(spec, trials, storage, data)
    create_study(spec, trials, storage, root)
    view = _start_view(spec, storage, trials) if progress else None
    lost: list[int] = []
    try:
        if workers == 1:
            worker_mod.work(spec.name, storage, data=root, timeout=timeout, hooks=hooks)
        else:
            procs = worker_mod.launch(
                workers, spec.name, storage, data=root, timeout=timeout, hooks=hooks,
                per_gpu=per_gpu,
            )
            lost = _wait(procs)
    finally:
        if view is not None:
            view.stop()
    summary = summarise(spec.name, storage)
    _raise_if_failed(spec.name, storage, summary)
    if lost and summary.complete + summary.pruned < summary.target:
        raise WorkerError(
            f"{len(lost)} of {workers} worker processes exited early (codes {lost}) and the "
            f"study has {summary.complete + summary.pruned}/{summary.target} finished trials; "
            "rerun to resume"
        )
    return dataclasses.replace(summary, lost_workers=tuple(lost))


def _raise_if_failed(name: str, storage: str, summary: RunSummary) -> None:
    """A halted study (its workers stopped) or a run in which nothing finished but trials
    failed ends with an error (exit code 3), never as a success.
    """
    import optuna

    from sweep.execution.halt import RunFailed, RunHalted, stored_halt

    halt = stored_halt(optuna.load_study(study_name=name, storage=open_storage(storage)))
    if halt is not None:
        raise RunHalted(name, halt)
    if summary.complete + summary.pruned == 0 and summary.failed:
        raise RunFailed(f"study {name!r}: no trial finished and {summary.failed} failed; "
                        f"`sweep status --study {name}` lists the failures")


def _finished_already(spec: StudySpec, storage: str, target: int) -> bool:
    """Whether the study exists with `target` finished trials and, when the spec confirms, its
    confirmation runs done (a rerun with nothing to do). A SQLite file that does not exist yet
    answers at once, without importing Optuna: the forkserver then starts sooner, and its torch
    import is what the first trial waits for.
    """
    from sweep.storage import sqlite_path

    path = sqlite_path(storage)
    if path is not None and not path.exists():
        return False
    import optuna

    from sweep.execution.workers import study_done

    try:  # read-only: asked before the inputs are validated, so it must create nothing
        study = optuna.load_study(study_name=spec.name, storage=read_storage(storage))
    except StorageUnreachable:
        raise  # a silent server: fail now, not after a second connect timeout in `prepare`
    except (KeyError, StorageError):
        return False
    return study_done(study, target, spec.confirm, spec.stop_search)


def _wait(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for worker processes; on Ctrl-C give them time to mark their trials, then stop.
    Returns the exit codes of those that failed (killed, crashed): the others finish the study
    (a dead worker's trial is retried after the heartbeat grace period).
    """
    import subprocess

    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        # From a terminal the workers got SIGINT too and are closing their trials; a SIGINT
        # sent to this process alone is passed on to the workers still running after 3 s.
        deadline = time.monotonic() + 3
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    return [p.returncode for p in procs if p.returncode not in (0, None)]


def _start_view(spec: StudySpec, storage: str, target: int) -> LiveView:
    from sweep.execution.progress import LiveView

    view = LiveView(spec.name, storage, target, spec.budget.epochs)
    threading.Thread(target=view.run, daemon=True).start()
    return view


def summarise(study_name: str, storage_url: str) -> RunSummary:
    """Counts by state and the best trial of the study, read back from the storage."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    from sweep.execution.confirm import search_trials
    from sweep.execution.progress import headline_best, snapshot
    from sweep.execution.settle import stored_stop

    trials = study.get_trials(deepcopy=False)
    search = search_trials(trials)
    count = {s: sum(t.state == s for t in search) for s in TrialState}
    best = _best(study)
    stopped = stored_stop(study)
    return RunSummary(
        study=study_name,
        storage=storage_url,
        target=int(study.user_attrs.get("target", 0)),
        complete=count[TrialState.COMPLETE],
        pruned=count[TrialState.PRUNED],
        failed=count[TrialState.FAIL],
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        confirmations=sum(t.state == TrialState.COMPLETE for t in trials) - count[
            TrialState.COMPLETE],
        headline=headline_best(snapshot(study)),
        search_stopped=None if stopped is None else stopped.line(),
    )


def _best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None

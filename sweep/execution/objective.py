"""Trial → RunConfig → `cloudseg` training (in a child process) → metric, with failure classes.

- Each epoch the validation metric goes to `trial.report`; when `trial.should_prune()` the child
  is told to stop and the trial ends PRUNED (its history is still stored).
- OOM is a property of a region of the space (large batch × large model), so an OOM trial ends
  COMPLETE with the worst possible value (0 IoU when maximising) and `failure = "oom"`: TPE
  ignores FAILED trials and would propose the region again; a worst value steers it away, and the
  `failure` attr keeps it visible (status, export never picks it: it has no checkpoint).
- Other failures (diverged, data, timeout, bug) end FAILED with `failure`/`failure_message`; the
  study goes on (the worker's `catch`). Ctrl-C ends the trial FAILED with `failure = "interrupted"`.

What a trial stores is a `sweep.record.TrialRecord`, written step by step with `save`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage

from cloudseg import ConfigError, RunConfig, file_sha256
from sweep.artifacts import has_images, learning_curve_png, pyplot, upload_trial_files
from sweep.execution.confirm import confirms
from sweep.execution.lineage import lineage
from sweep.execution.trial_process import TrialFailure, run_isolated
from sweep.record import (
    Artifacts,
    DataInfo,
    EpochEntry,
    FailureKind,
    SceneSplit,
    Timings,
    TrialRecord,
    save,
)
from sweep.records import write_failure_note, write_trial_note
from sweep.study.space import suggest
from sweep.study.spec import StudySpec

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

    from sweep.execution.share import TrialShare

WORST = {"maximize": 0.0, "minimize": 1.0}  # every spec metric lies in [0, 1]


def trial_config(
    spec: StudySpec, params: dict[str, Any], data_root: Path, subset_seed: int,
    share: TrialShare | None = None,
) -> RunConfig:
    """Fixed < budget < drawn params; the data root and subset seed are the sweep's own, and
    `share` (the worker's threads and cores per trial) sets train.threads and num_workers.
    """
    b = spec.budget
    machine = {} if share is None else share.overrides(spec.fixed.train.num_workers)
    return spec.fixed.with_overrides(
        {
            "train.epochs": b.epochs,
            "data.train_fraction": b.train_fraction,
            "data.crop": b.crop,
            "train.max_steps_per_epoch": b.batches_per_epoch,
            "data.max_val_patches": b.max_val_patches,
            "train.val_metric": spec.val_metric,
            "train.select_at": spec.threshold_rule,
            "data.root": str(data_root),
            "data.subset_seed": subset_seed,
            "data.device_share": 1 / spec.execution.trials_per_gpu,
            **machine,
            **params,
        },
        f"{spec.source}: trial config",
    )


def origin_number(storage: BaseStorage, trial: optuna.trial.Trial) -> int:
    """The number of the trial this one retries (stale-worker retry), else its own number.

    Read through the storage the worker opened: Optuna gives a Trial no public id or storage,
    so the frozen trial is looked up by study name and trial number.
    """
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    origin = lineage(storage.get_trial(trial_id)).failed_trial
    return trial.number if origin is None else origin


def subset_seed(spec: StudySpec, number: int) -> int:
    """Per-trial training subset, reproducible from the study seed and the trial number."""
    return (spec.seed * 1_000_003 + number) % 2**31


class Objective:
    """A trial: draw a config, train it in a fresh child process, store its record and files.

    `storage`: the worker's Optuna storage, the one its study runs on; `share`: the threads and
    cores each trial gets (sweep.execution.share).
    """

    def __init__(
        self,
        spec: StudySpec,
        data_root: Path,
        store: FileSystemArtifactStore | None,
        context: dict[str, float],
        storage: BaseStorage,
        share: TrialShare | None = None,
    ) -> None:
        self.spec, self.data_root, self.store, self.context = spec, data_root, store, context
        self.storage, self.share = storage, share
        if store is not None:  # this process draws the curves: matplotlib loads (half a
            # second) while the first trial trains, not when its curve is due
            threading.Thread(target=pyplot, name="load-matplotlib", daemon=True).start()

    def __call__(self, trial: optuna.trial.Trial) -> float:
        """The metric of the best epoch; raises TrialPruned or the failure (an OOM scores worst)."""
        spec, metric = self.spec, self.spec.record_key
        seed = subset_seed(spec, origin_number(self.storage, trial))
        save(trial, TrialRecord(subset_seed=seed))
        params = suggest(trial, spec.space, spec.fixed, self.context)
        confirming = confirms(trial) is not None  # a confirmation runs its whole budget
        # A confirmation run redraws everything a user retraining the config would meet: the
        # subset (above), and the initialisation, crops and flips (train.seed).
        redraw = {"train.seed": seed} if confirming else {}
        try:
            config = trial_config(spec, {**params, **redraw}, self.data_root, seed, self.share)
        except ConfigError as err:
            return self._failed(trial, TrialFailure(FailureKind.BUG, str(err)))
        save(trial, TrialRecord(config=config.to_dict()))
        history: list[dict[str, Any]] = []
        pruned = []
        last_epoch = config.train.epochs

        def on_epoch(epoch: int, record: dict[str, Any]) -> bool:
            history.append(record)
            trial.report(float(record[metric]), epoch)
            # Never asked after the last epoch: a trial that trained its whole budget is
            # complete (pruning it then would only throw its checkpoint away).
            if not confirming and epoch < last_epoch and trial.should_prune():
                pruned.append(epoch)
                return True
            return False

        out = Path(tempfile.mkdtemp(prefix=f"cloudsweep-trial-{trial.number}-"))
        stored: list[TrialRecord] = []
        curve: dict[str, str] = {}

        def on_result(payload: dict[str, Any]) -> None:  # while the child draws the overlay
            stored.append(result_record(payload))
            save(trial, stored[0])
            if self.store is not None and has_images(payload["stopped_early"],
                                                     payload["best_checkpoint"]):
                path = learning_curve_png(payload["history"], out / "learning_curve.png")
                curve["curve"] = str(path)

        try:
            payload = run_isolated(
                config, out, on_epoch, timeout=spec.budget.trial_timeout, spare=True,
                on_result=on_result,
            )
            self._attach(trial, stored[0], {**payload["files"], **curve}, keep_all=not pruned)
        except TrialFailure as failure:
            save(trial, TrialRecord(history=_curve(history)))
            return self._failed(trial, failure, epochs=len(history))
        except KeyboardInterrupt:
            save(trial, TrialRecord(history=_curve(history), failure=FailureKind.INTERRUPTED,
                                    failure_message="stopped by Ctrl-C"))
            raise
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if pruned:
            raise optuna.TrialPruned(f"pruned at epoch {pruned[0]}")
        return float(payload["metrics"][metric])

    def _failed(self, trial: optuna.trial.Trial, failure: TrialFailure, epochs: int = 0) -> float:
        save(trial, TrialRecord(failure=failure.kind, failure_message=failure.message))
        write_failure_note(trial, failure.kind.value, failure.message, epochs,  # the dashboard's
                           worst=failure.kind == FailureKind.OOM)  # "why"
        if failure.traceback and self.store is not None:  # kept where `sweep run` points to
            folder = Path(tempfile.mkdtemp(prefix=f"cloudsweep-trial-{trial.number}-tb-"))
            try:
                path = folder / "traceback.txt"
                path.write_text(failure.traceback)
                ids = upload_trial_files(trial, self.store, {"traceback": str(path)})
                save(trial, TrialRecord(artifacts=Artifacts(**ids)))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        if failure.kind == FailureKind.OOM:
            return WORST[self.spec.direction]
        raise failure

    def _attach(self, trial: optuna.trial.Trial, record: TrialRecord, files: dict[str, str],
                keep_all: bool) -> None:
        """The stored result's files (weights digest, artifacts) and its dashboard note."""
        files = files if keep_all else {}  # a pruned trial keeps no files
        checkpoint = Path(files.get("checkpoint", ""))
        if keep_all and checkpoint.is_file():  # the bundle's identity
            save(trial, TrialRecord(weights_sha256=file_sha256(checkpoint)))
        if self.store is not None and files:
            ids = upload_trial_files(trial, self.store, files)
            save(trial, TrialRecord(artifacts=Artifacts(**ids)))
        write_trial_note(trial, self.spec, record, pruned=not keep_all)


def _curve(history: list[dict[str, Any]]) -> tuple[EpochEntry, ...]:
    return tuple(EpochEntry.model_validate(r) for r in history)


def result_record(payload: dict[str, Any]) -> TrialRecord:
    """The record of a finished training, from the trial process's result payload (the
    scene lists get their own attribute, so `data` stays short and readable).
    """
    data = dict(payload["data"])
    scenes = data.pop("scenes", None)
    split: dict[str, Any] = {} if scenes is None else {"scenes": SceneSplit.model_validate(scenes)}
    return TrialRecord(
        config=payload["config"], best_epoch=payload["best_epoch"], metrics=payload["metrics"],
        history=_curve(payload["history"]),
        timings=Timings(fit_seconds=payload["fit_seconds"],
                        images_per_s=payload["images_per_s"],
                        fit_started_at=payload.get("fit_started_at")),
        peak_memory_mb=payload["peak_memory_mb"], data=DataInfo.model_validate(data),
        **split,
    )

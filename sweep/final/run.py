"""Run a final-fit study's queued fits: here and, at the same time, on any other worker
(`sweep finalize` on each machine), until none is waiting or running.

The engine is the search's: `sweep.execution.objective.Objective` (a fresh trial process, the
record, the checkpoint and curve as artifacts) under `study.optimize` on a heartbeat storage, so
a fit whose worker died is failed as stale and queued again with its attributes by Optuna's
retry callback, and `enqueue_final_fits` queues again a fit that was interrupted (Ctrl-C) or
killed. A trial the sampler proposes because another worker took the last queued fit in the
same instant, or a second copy of a fit two workers queued at once, ends before training.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

from sweep.final.queue import final_of, holder, pending
from sweep.record import FailureKind, TrialRecord, save


class NotQueued(Exception):
    """A trial that is no queued final fit (or a second copy of one): ended before training."""


class FinalFitObjective:
    """The search objective, for queued final fits only."""

    def __init__(self, objective: Any) -> None:
        self.objective = objective

    def __call__(self, trial: Any) -> float:
        """The fit's value; a trial that is not a queued final fit ends at once."""
        if final_of(trial) is None:
            save(trial, TrialRecord(failure=FailureKind.SURPLUS,
                                    failure_message="no final fit was queued for this trial"))
            raise NotQueued(f"trial {trial.number} is not a queued final fit")
        if (first := holder(trial)) is not None:
            save(trial, TrialRecord(failure=FailureKind.DUPLICATE,
                                    failure_message=f"trial {first} holds this final fit"))
            raise NotQueued(f"trial {trial.number} repeats final fit {first}")
        return float(self.objective(trial))


def run_final_fits(name: str, storage_url: str, *, data: str | Path | None = None,
                   poll_s: float | None = None) -> None:
    """Run the queued fits of final-fit study `name` until none is waiting or running."""
    import optuna

    from sweep.artifacts import artifact_store
    from sweep.execution.objective import Objective
    from sweep.execution.share import TrialShare
    from sweep.execution.trial_log import LoggedObjective
    from sweep.execution.trial_process import TrialFailure, close_spare, warm_up
    from sweep.execution.workers import load_study_attrs
    from sweep.storage import open_storage
    from sweep.study.spec import StudySpec

    attrs = load_study_attrs(name, storage_url)
    spec = StudySpec.from_stored(attrs["spec"], f"study {name}")
    ex = spec.execution
    storage = open_storage(storage_url, heartbeat_interval=ex.heartbeat_interval,
                           grace_period=ex.grace_period, max_retry=ex.max_retry)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=storage, sampler=spec.build_sampler(),
                              pruner=optuna.pruners.NopPruner())
    if pending(study) == (0, 0):
        return
    warm_up(spec.model_names)
    share = TrialShare.of_worker(ex.trial_threads)
    objective = Objective(
        spec, Path(data or attrs["data_root"]), artifact_store(attrs["artifact_dir"]),
        {"measured_pos_weight": float(attrs.get("measured_pos_weight") or 1.0)}, storage, share,
    )
    wrapped = FinalFitObjective(LoggedObjective.for_stdout(objective))
    poll = float(ex.heartbeat_interval) if poll_s is None else poll_s
    try:
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's fit: queued again
            waiting, running = pending(study)
            if waiting:
                study.optimize(wrapped, n_trials=1, catch=(TrialFailure, NotQueued),
                               gc_after_trial=False)
            elif running:  # another worker's fits: stay in case it dies
                time.sleep(poll)
            else:
                return
    finally:
        close_spare()
        sys.stdout.flush()

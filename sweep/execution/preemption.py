"""SIGTERM, what a scheduler sends before it kills a worker (SLURM on `scancel`, preemption and
time limit, `KillWait` seconds before SIGKILL; Kubernetes on pod deletion, the grace period
before SIGKILL): stop the running trial at once and leave, so that the trial is retried with the
same params by whichever worker comes next (a requeued task or another one) instead of after the
heartbeat grace period.

The handler kills the trial process (SIGKILL: a trial holds nothing to save); the trial then
fails as "killed" the usual way (sweep.execution.trial_process), and `retry_killed`
(sweep.execution.target) queues it again with its params and training subset. After that
trial's callbacks the worker raises `Terminated`. A SIGTERM between trials raises `Terminated`
at once. A SIGKILL gives no such chance: Optuna's heartbeat stays the safety net.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from sweep.errors import WorkerError
from sweep.execution import trial_process

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(WorkerError):
    """The worker received SIGTERM and stopped (its running trial is queued again)."""

    exit_code = EXIT_CODE


def _terminated() -> Terminated:
    return Terminated("worker stopped by SIGTERM (scancel, preemption or time limit); its "
                      "running trial, if any, is queued again with the same params")


@contextmanager
def stop_on_sigterm() -> Iterator[Callable[[optuna.Study, FrozenTrial], None]]:
    """Handle SIGTERM while the block runs; yields the trial callback that ends the worker
    after the trial the signal stopped (put it after `retry_killed`). Outside the main thread
    (where no handler can be set) it does nothing.
    """
    received = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        first = not received.is_set()
        received.set()
        trial_process.TERMINATING.set()
        if not trial_process.kill_running() and first:
            raise _terminated()  # no trial running: leave now

    def after_trial(_study: optuna.Study, _trial: FrozenTrial) -> None:
        if received.is_set():
            raise _terminated()

    if threading.current_thread() is not threading.main_thread():
        yield lambda _study, _trial: None
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield after_trial
    finally:
        signal.signal(signal.SIGTERM, previous)

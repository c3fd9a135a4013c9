"""One log line per trial start and end, so `docker compose logs` shows a worker at work.

A terminal has the live view instead (`sweep run`), so the lines go to stdout only when it is
not a TTY. Every trial also records which worker ran it (`TrialRecord.worker`, see `worker_id`),
which is how `sweep status` lists the workers seen recently.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

from sweep.record import TrialRecord, failure_of, save


def worker_id(env: Mapping[str, str] | None = None) -> str:
    """The name a worker records on its trials, unique across machines and containers: under
    SLURM its job and array task, as `squeue` shows them (`slurm:1234_7`, a requeued task keeps
    its name); in a Kubernetes Indexed Job its pod (the hostname) and index; else
    `host:pid:suffix`, a random suffix because containers on host networking share the host's
    name and may share a pid.
    """
    env = os.environ if env is None else env
    if job := env.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm:{job}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    if job := env.get("SLURM_JOB_ID"):
        return f"slurm:{job}"
    if (index := env.get("JOB_COMPLETION_INDEX")) is not None:
        return f"{socket.gethostname()}:{index}"
    return f"{socket.gethostname()}:{os.getpid()}:{_suffix(os.getpid())}"


@functools.cache
def _suffix(_pid: int) -> str:
    """Four random hex digits, the same for every trial of one process (cached by pid)."""
    return secrets.token_hex(2)


def params_text(params: dict[str, Any]) -> str:
    """Params as `name=value` pairs on one line (floats to 4 significant digits)."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def stdout_log(line: str) -> None:
    """Print one log line at once (no buffering behind a pipe)."""
    print(line, flush=True)


class LoggedObjective:
    """Wraps an objective: records the worker, logs start and end (value or failure class)."""

    def __init__(self, objective: Callable[[Any], float], log: Callable[[str], None] | None,
                 worker: str | None = None) -> None:
        self.objective, self.log = objective, log
        self.worker = worker or worker_id()

    @classmethod
    def for_stdout(cls, objective: Callable[[Any], float]) -> LoggedObjective:
        """Log lines only when stdout is not a terminal (containers, nohup, CI)."""
        return cls(objective, None if sys.stdout.isatty() else stdout_log)

    def __call__(self, trial: optuna.Trial) -> float:
        """Run the wrapped objective between a start and an end line."""
        import optuna

        save(trial, TrialRecord(worker=self.worker))
        start = time.monotonic()
        # Params are drawn inside the objective; a retried trial already has its own.
        self._say(f"trial {trial.number} started on {self.worker}"
                  + (f": {params_text(trial.params)}" if trial.params else ""))
        try:
            value = self.objective(trial)
        except optuna.TrialPruned as pruned:
            self._end(trial, start, f"pruned ({pruned})" if str(pruned) else "pruned")
            raise
        except KeyboardInterrupt:
            self._end(trial, start, "failed (interrupted)")
            raise
        except Exception as err:
            kind = getattr(err, "kind", None) or type(err).__name__
            self._end(trial, start, f"failed ({kind})")
            raise
        failure = failure_of(trial)  # e.g. oom: complete with the worst value
        self._end(trial, start, f"complete, value {value:.4f}"
                  + (f" (failure {failure.value})" if failure else ""))
        return value

    def _end(self, trial: optuna.Trial, start: float, outcome: str) -> None:
        self._say(f"trial {trial.number} {outcome} in {time.monotonic() - start:.1f}s: "
                  f"{params_text(trial.params)}")

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

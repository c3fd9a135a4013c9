"""The share of a machine one trial gets: torch threads and the cores its DataLoader may use.

A worker decides it once, from its environment, and every trial's config records it
(`train.threads`, `train.num_workers`), so a trial and `cloudseg train` of its exported config
run the same way. `sweep run --workers K` splits the machine's cores between its K workers
(`environment_for`); a worker started by hand or by a scheduler owns every core it may run on
(its CPU affinity: a SLURM allocation, a container's cpuset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudseg import available_cores, loader_workers
from sweep.errors import SpecError

THREADS_ENV = "CLOUDSWEEP_TRIAL_THREADS"  # torch intra-op threads per trial
CORES_ENV = "CLOUDSWEEP_TRIAL_CORES"  # cores per trial (DataLoader workers)


@dataclass(frozen=True)
class TrialShare:
    """Threads (None: torch's default) and cores each trial of this worker gets."""

    threads: int | None
    cores: int

    @classmethod
    def of_worker(cls, spec_threads: int | None,
                  env: Mapping[str, str] = os.environ) -> TrialShare:
        """This worker's share: the environment (set by `environment_for`, or by hand) over
        the spec's `execution.trial_threads`; every core this process may run on otherwise.
        """
        threads = _positive(env, THREADS_ENV) or spec_threads
        cores = min(_positive(env, CORES_ENV) or available_cores(), available_cores())
        return cls(threads=threads, cores=cores)

    def overrides(self, num_workers: int) -> dict[str, Any]:
        """Run-config fields a trial of this worker gets, for a spec asking `num_workers`."""
        return {"train.threads": self.threads,
                "train.num_workers": loader_workers(num_workers, self.cores)}

    def note(self, num_workers: int) -> str | None:
        """The one line a worker prints when it runs fewer DataLoader workers than asked."""
        granted = loader_workers(num_workers, self.cores)
        if granted >= num_workers:
            return None
        return (f"note: train.num_workers {num_workers} -> {granted}: each trial of this worker "
                f"owns {self.cores} of this machine's {available_cores()} cores (set "
                f"{CORES_ENV} to change it)")


def environment_for(count: int, cpu_only: bool, env: Mapping[str, str]) -> dict[str, str]:
    """What one of `count` local workers adds to its environment: its share of the cores (and,
    CPU only, as many torch threads), unless the user set them.
    """
    share = str(max(1, available_cores() // count))
    added = {CORES_ENV: share} if CORES_ENV not in env else {}
    if cpu_only and THREADS_ENV not in env:  # CPU workers share the cores, not oversubscribe
        added[THREADS_ENV] = share
    return added


def _positive(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SpecError(f"${name}: expected a whole number of at least 1 (got {raw!r})")
    return int(raw)

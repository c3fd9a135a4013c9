"""How many cores a run may use: the DataLoader's workers are bounded by them.

More loader workers than the run's cores only compete with training (and with each other) for
the same cores; torch also warns about it on every loader it builds. `available_cores` counts
the cores this process may run on (its CPU affinity: what a scheduler such as SLURM or a
container grants, not the machine's total); a caller that shares them out (the sweep, several
trials on one machine) passes its own share.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def loader_workers(requested: int, cores: int | None = None) -> int:
    """DataLoader workers for a run asking `requested` that owns `cores` cores (default: all
    it may run on): at most one worker per owned core.
    """
    return max(0, min(int(requested), available_cores() if cores is None else int(cores)))

"""A real SLURM for the tests: the one-node cluster `.ci/slurm` starts (`.ci/run` exports its
SLURM_CONF and CLOUDSWEEP_TEST_SLURM=1). Outside CI a missing cluster skips with the reason;
with CI=true it fails, as the PostgreSQL tests do.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.storage import in_ci

REPO = Path(__file__).resolve().parents[1]
JOB_SCRIPT = REPO / "slurm" / "sweep-worker.sbatch"
ENV_FLAG = "CLOUDSWEEP_TEST_SLURM"


def require_slurm() -> None:
    """Skip (fail under CI=true) unless a SLURM cluster answers."""
    reason = None
    if os.environ.get(ENV_FLAG) != "1":
        reason = f"{ENV_FLAG} is not 1: no SLURM cluster to test against (.ci/slurm starts one)"
    elif shutil.which("sbatch") is None:
        reason = "sbatch is not on PATH"
    else:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if out.returncode != 0 or not re.search(r"idle|mix|alloc", out.stdout):
            reason = f"SLURM does not answer: {(out.stderr or out.stdout).strip()[:200]}"
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the SLURM tests must run; see .ci/run)")
    pytest.skip(reason)


def job_env(storage_url: str) -> dict[str, str]:
    """What a user exports before sbatch: the storage, and `sweep` as this interpreter runs it."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "SWEEP_STORAGE": storage_url, "SWEEP": f"{sys.executable} -m sweep.cli",
            "PYTHONPATH": path, "CLOUDSWEEP_TRIAL_THREADS": "1"}


def sbatch(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Submit the shipped job script; returns the job id."""
    out = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1",
                          "--output", str(cwd / "worker-%A_%a.out"), *args],
                         env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


def job_states(job: str) -> dict[str, str]:
    """`JobId (array task as 12_3) -> JobState` of a job's tasks, from scontrol (no slurmdbd
    here for sacct; MinJobAge keeps finished jobs listed).
    """
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        task, array = fields.get("ArrayTaskId"), fields.get("ArrayJobId")
        states[f"{array}_{task}" if task and array else fields["JobId"]] = fields["JobState"]
    return states


@contextlib.contextmanager
def cancelled_at_exit(jobs: list[str]) -> Iterator[None]:
    """scancel the jobs listed (by the block) when it ends, e.g. by a failed assertion."""
    try:
        yield
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], check=False, capture_output=True)


def wait_until_done(job: str, timeout: float) -> dict[str, str]:
    """Wait until no task of `job` is pending or running; returns their states."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = job_states(job)
        if states and not any(s in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING",
                                    "REQUEUED") for s in states.values()):
            return states
        time.sleep(0.5)
    subprocess.run(["scancel", job], check=False)
    raise AssertionError(f"job {job} did not finish in {timeout:.0f}s: {job_states(job)}")


def job_outputs(folder: Path) -> str:
    """The workers' output files, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted(folder.glob("worker-*.out")))


def trial_processes(job: str) -> list[int]:
    """The job's trial processes: children of its workers' forkserver (from /proc)."""
    out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True)
    pids = [int(line.split()[0]) for line in out.stdout.splitlines()[1:] if line.split()]
    found = []
    for pid in pids:
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"forkserver" in parent:
            found.append(pid)
    return found

"""A worker's name (`worker` on its trials, `sweep status`'s worker list) is unique everywhere:
SLURM job and array task, a Kubernetes Indexed Job's pod and index, else host:pid plus a random
suffix (two containers on host networking share the host's name and may share a pid)."""

from __future__ import annotations

import socket
import subprocess
import sys

from sweep.execution.trial_log import worker_id


def test_under_slurm_a_worker_is_named_by_its_array_job_and_task():
    env = {"SLURM_ARRAY_JOB_ID": "1234", "SLURM_ARRAY_TASK_ID": "7", "SLURM_JOB_ID": "1241"}
    assert worker_id(env) == "slurm:1234_7"
    assert worker_id({"SLURM_JOB_ID": "99"}) == "slurm:99"


def test_in_an_indexed_job_a_worker_is_named_by_its_pod_and_index():
    assert worker_id({"JOB_COMPLETION_INDEX": "3"}) == f"{socket.gethostname()}:3"


def test_elsewhere_host_and_pid_get_a_random_suffix_stable_within_a_process():
    name = worker_id({})
    host, pid, suffix = name.rsplit(":", 2)
    assert host == socket.gethostname() and len(suffix) == 4
    assert worker_id({}) == name
    code = "from sweep.execution.trial_log import worker_id; print(worker_id({}))"
    others = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip().rsplit(":", 1)[1] for _ in range(2)}
    assert len(others | {suffix}) == 3  # 16 bits each: a clash is a 1 in 20,000 event

"""Several trials on one GPU: local workers share GPUs `trials_per_gpu` at a time, `sweep run`
starts that many per visible GPU by default, and each trial's run config knows its share of the
GPU, so the device-resident data of trials started together fits."""

from __future__ import annotations

from pathlib import Path

import torch

from cloudseg.data.device_batches import FIT_FRACTION, fits, subset_bytes
from sweep.execution.objective import trial_config
from sweep.execution.workers import default_worker_count, gpu_for
from sweep.study.spec import parse_spec


def test_workers_fill_each_gpu_with_its_share_of_trials():
    gpus = ["0", "1"]
    assert [gpu_for(i, gpus, 2) for i in range(5)] == ["0", "0", "1", "1", "0"]
    assert [gpu_for(i, gpus, 1) for i in range(3)] == ["0", "1", "0"]
    assert gpu_for(3, ["0"], 4) is None  # one GPU: every worker sees it as it is


def test_default_worker_count_is_trials_per_gpu_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert default_worker_count(3) == 6
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert default_worker_count(3) == 1  # no GPU: one worker


def test_a_trial_knows_its_share_and_the_fit_check_uses_it(monkeypatch):
    spec = parse_spec({"name": "s", "execution": {"trials_per_gpu": 4},
                       "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}},
                      "s.yaml")
    config = trial_config(spec, {}, Path("/data"), 0)
    assert config.data.device_share == 0.25
    free = 10 * subset_bytes(100)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, free))
    cuda = torch.device("cuda", 0)
    n = int(FIT_FRACTION * free / subset_bytes(1))  # what one run alone may hold
    assert fits(n, cuda, 1.0) and not fits(n, cuda, 0.25) and fits(n // 4, cuda, 0.25)
    assert not fits(1, torch.device("cpu"))

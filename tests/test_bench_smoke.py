"""The GPU check's script runs end to end on a machine without CUDA (its CPU smoke mode), so the
one run a lent GPU gets is not spent on a broken script. Nothing here is timed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_its_steps_at_cpu_scale_without_cuda(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path),
           "ROOT": str(tmp_path / "tree"), "CLOUDSEG_CACHE_DIR": str(tmp_path / "cache"),
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "1"], env=env,
                          capture_output=True, text=True, timeout=280)
    log = (tmp_path / "gpu_check.log").read_text()  # tee'd: the same as stdout
    assert done.returncode == 0, log[-2000:] + done.stderr[-2000:]
    assert "no CUDA device: a CPU smoke run" in log
    assert re.search(r"unet-resnet34 +[\d.]+M +fp32 +[\d.]+", log)  # a measured train step
    # loss-search confirms its top configs: 1 search trial, then its config's 3 repeats
    assert "1 search trials finished (0 pruned), then 3 confirmation runs" in log
    assert re.search(r"wall / sum of fit = [\d.]+x", log)
    assert re.search(r"40 trials extrapolated: [\d.]+ min = the first trial with the start-up "
                     r"[\d.]+ s \+ 39 x [\d.]+ s per later trial \+ 9 confirmation runs x", log)

"""The GPU check's script runs end to end on a machine without CUDA (its CPU smoke mode), so the
one run a lent GPU gets is not spent on a broken script. Nothing here is timed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
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
    assert re.search(r"data preparation: [\d.]+ s", log)  # the tree, before the timed steps
    assert re.search(r"unet-resnet34 +[\d.]+M +fp32 +[\d.]+", log)  # a measured train step
    # loss-search confirms its top configs: 1 search trial, then its config once (the smoke
    # run's repeats), while the 40-trial figure counts the shipped spec's 3 x 3 runs
    assert "1 search trial finished (0 pruned), then 1 confirmation run " in log
    assert re.search(r"wall / sum of fit = [\d.]+x", log)
    assert re.search(r"40 trials extrapolated: [\d.]+ min = the first trial with the start-up "
                     r"[\d.]+ s \+ 39 x [\d.]+ s per later trial \+ 9 confirmation runs x", log)


def test_time_to_answer_stops_a_study_at_its_deadline_and_goes_on():
    """Past --deadline the study gets Ctrl-C, so the figures of the finished trials still
    print inside the device's time limit instead of the whole run being killed.
    """
    spec = importlib.util.spec_from_file_location("time_to_answer",
                                                  REPO / "bench" / "time_to_answer.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    t0 = time.monotonic()
    code = bench.run_until(hang, REPO, deadline=1.0)
    assert code != 0 and time.monotonic() - t0 < 20  # interrupted, not waited out
    assert bench.run_until([sys.executable, "-c", "pass"], REPO, deadline=30.0) == 0

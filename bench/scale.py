"""What grows with the data set: `cloudseg prepare` and a first sweep at three sizes.

For each size a synthetic tree in 38-Cloud's layout is drawn (coarse: the pixels do not
matter), then, each in its own process:

1. `cloudseg prepare`: ms per patch (indexing, packing, the per-patch moments) and its peak
   anonymous memory (the packed arrays are file-backed pages and not counted);
2. the first `sweep run` after it (the demo study, one tiny trial): seconds from launch to the
   first training step (the trial's `fit_started_at`), and the peak resident memory of its
   largest process (file-backed cache pages it touched included).

A start-up that grows with the size is a per-patch pass somewhere before the first step.

    python bench/scale.py                  # 250, 500 and 1,000 patches: a few minutes on 2 cores
    python bench/scale.py --full           # 462, 2,772 and 8,316 patches (38-Cloud's 18 scenes
                                           # of 22 x 21 patches; a 10 GiB cache, tens of minutes)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from cloudseg.data import write_synthetic
from sweep.study.spec import find_spec_file

SMALL = ((10, (1920, 1920)), (20, (1920, 1920)), (40, (1920, 1920)))  # 25 patches a scene
FULL = ((1, (8100, 7800)), (6, (8100, 7800)), (18, (8100, 7800)))  # 462 patches a scene
TINY = ("budget.epochs=1", "budget.crop=64", "budget.batches_per_epoch=1",
        "budget.max_val_patches=2", "confirm=null")

PREPARE = """
import sys, threading, time
from cloudseg.data import prepare_cache
peak, done = [0], threading.Event()
def anon():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("RssAnon")) * 1024
def sample():
    while not done.wait(0.05):
        peak[0] = max(peak[0], anon())
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
cache = prepare_cache(sys.argv[1], sys.argv[2])
print(len(cache), time.perf_counter() - t0, max(peak[0], anon()))
"""


def run_measured(cmd: list[str], **kw: object) -> tuple[str, int]:
    """Stdout of `cmd` and the peak RSS (bytes) of its largest process, children included."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode})")
    return out, usage.ru_maxrss * 1024


def first_sweep(folder: Path, data: Path, cache: Path) -> tuple[float, int]:
    """Seconds from `sweep run`'s launch to its first training step, and its peak RSS."""
    spec = yaml.safe_load(find_spec_file("demo").read_text())
    spec.update(data=None, synthesize_if_missing=False, name="scale")
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sets = [a for o in TINY for a in ("--set", o)]
    cmd = [sys.executable, "-m", "sweep.cli", "run", "--study", str(path), "--trials", "1",
           "--data", str(data), "--no-progress", *sets]
    env = {**os.environ, "CLOUDSEG_CACHE_DIR": str(cache)}
    started = time.time()
    _, rss = run_measured(cmd, cwd=folder, env=env)
    study = optuna.load_study(study_name="scale", storage=f"sqlite:///{folder / 'sweeps.db'}")
    first = min(t.user_attrs.get("fit_started_at", float("inf")) for t in study.trials)
    return first - started, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="38-Cloud's sizes, up to 8,316 patches")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{os.cpu_count()} CPU cores; one process per step")
    print(f"{'patches':>8} {'prepare ms/patch':>17} {'prepare anon peak':>18} "
          f"{'first sweep: launch to first step':>34} {'its peak RSS':>13}")
    with tempfile.TemporaryDirectory(prefix="cloudseg-scale-") as tmp:
        for i, (scenes, size) in enumerate(FULL if args.full else SMALL):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            data = write_synthetic(folder / "data", train_scenes=scenes, test_scenes=0,
                                   scene_size=size, coarse=8 if args.full else 4, workers=2)
            cache = folder / "cache"
            out, _ = run_measured([sys.executable, "-c", PREPARE, str(data), str(cache)])
            n, seconds, anon = out.split()
            start, rss = first_sweep(folder, data, cache)
            print(f"{int(n):>8} {float(seconds) / int(n) * 1000:>17.1f} "
                  f"{int(anon) / 2**20:>14.0f} MiB {start:>32.2f} s {rss / 2**20:>9.0f} MiB",
                  flush=True)
            subprocess.run(["rm", "-rf", str(folder)], check=True)  # the next size's disk


if __name__ == "__main__":
    main()

"""Sweep overhead and pruning savings on the demo study, measured in one run on this machine.

1. Overhead: wall time of `sweep run --study demo --trials N` (a real subprocess on a fresh
   SQLite file; the synthetic data and its cache are prepared first, as a second run of
   `make demo` finds them) against the sum of its trials' fit times (`fit_seconds`).
   Target: <= 1.10x.
2. Pruning: the same study, same sampler seed and trial count, with the spec's pruner and with
   `pruner: none`: epochs trained and best validation IoU. Targets: pruning saves >= 40% of
   the epochs, and the best IoU stays within 0.01.

    python bench/sweep_overhead.py [--trials 20] [--study demo] [--crop 192]

The overhead is mostly fixed (process start, the forkserver's torch import, per-trial fork,
data preparation and the overlay/curve PNGs), so its ratio falls as trials get longer:
`--crop 192` makes every step about four times longer.
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
from optuna.trial import TrialState

from cloudseg.data import open_cache, write_synthetic
from sweep.study.spec import find_spec_file

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run(spec_path: Path, folder: Path, trials: int, data: Path) -> float:
    cmd = [str(Path(sys.executable).with_name("sweep")), "run", "--study", str(spec_path),
           "--trials", str(trials), "--data", str(data), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(folder: Path, name: str) -> dict[str, float]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'sweeps.db'}")
    trials = study.get_trials(states=FINISHED)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "fit": sum(t.user_attrs.get("fit_seconds", 0.0) for t in trials),
        "trial": sum(t.duration.total_seconds() for t in study.get_trials() if t.duration),
        "epochs": sum(len(t.user_attrs.get("history", [])) for t in trials),
        "best": max((t.value for t in done), default=float("nan")),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "trials": len(trials),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--study", default="demo")
    p.add_argument("--crop", type=int, help="override the budget's crop: longer trials")
    args = p.parse_args()
    spec = yaml.safe_load(find_spec_file(args.study).read_text())
    if args.crop:
        spec["budget"] = {**spec["budget"], "crop": args.crop}
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("CLOUDSEG_CACHE_DIR", str(root / "cache"))
        data = write_synthetic(root / "data", train_scenes=6, test_scenes=2,
                               scene_size=(800, 800), seed=spec.get("seed", 0))
        open_cache(data)  # packed once, as a second `make demo` finds it
        results = {}
        for label, pruner in (("pruned", spec["pruner"]), ("unpruned", {"name": "none"})):
            folder = root / label
            folder.mkdir()
            variant = {**spec, "pruner": pruner, "data": None, "synthesize_if_missing": False}
            spec_path = folder / f"{spec['name']}.yaml"
            spec_path.write_text(yaml.safe_dump(variant, sort_keys=False))
            wall = run(spec_path, folder, args.trials, data)
            results[label] = {"wall": wall, **measure(folder, spec["name"])}
    a, b = results["pruned"], results["unpruned"]
    cpu = os.cpu_count()
    threads = spec.get("execution", {}).get("trial_threads") or "torch default"
    print(f"study {args.study}, {args.trials} trials, crop {spec['budget']['crop']}, {cpu} CPU "
          f"cores, torch threads per trial: {threads}")
    for label, r in results.items():
        print(f"  {label:9s} wall {r['wall']:7.1f} s  sum of fit {r['fit']:7.1f} s  "
              f"epochs {r['epochs']:4d}  pruned {r['pruned']:3d}  best IoU {r['best']:.4f}")
    overhead = a["wall"] / a["fit"]
    saved = 1 - a["epochs"] / b["epochs"]
    gap = b["best"] - a["best"]
    print(f"overhead: wall / sum of fit = {overhead:.2f}x (target <= 1.10x); "
          f"without pruning {b['wall'] / b['fit']:.2f}x")
    print(f"  of which inside trials (fork, data prep, images, uploads): sum of trial time / "
          f"sum of fit = {a['trial'] / a['fit']:.2f}x; outside (start-up, sampler, storage): "
          f"wall / sum of trial time = {a['wall'] / a['trial']:.2f}x")
    print(f"pruning saves {saved:.0%} of the epochs (target >= 40%); best IoU "
          f"{a['best']:.4f} vs {b['best']:.4f} without pruning (gap {gap:+.4f}, target <= 0.01)")


if __name__ == "__main__":
    main()

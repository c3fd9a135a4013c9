"""Finished trials per hour with 1 worker against K workers (default 4) on the demo study, both
measured in the same run, each on a fresh SQLite storage over the same synthetic data.

Each configuration runs as its own `sweep run --workers K` process (the engine users run).
Trials use the spec's `execution.trial_threads` torch threads (demo: 1); OMP_NUM_THREADS is set
to cores // K (at least 1) for everything else. Three rates are printed: over the whole command
(start-up included), over the trials (first trial start to last trial end, storage timestamps)
and steady state (after the first K trials ended: roughly once every worker has paid its
start-up, importing torch into its trial forkserver). Finished = complete + pruned.

On a CPU box the ratio is bounded by the core count: 4 workers on 2 cores can at best double the
rate, and less once they contend for memory bandwidth. On a GPU box give each worker a GPU
(`CUDA_VISIBLE_DEVICES` is split round robin by `sweep run --workers`).

    python bench/workers.py                       # demo study, 8 trials per configuration
    python bench/workers.py --workers 4 --trials 16 --study studies/demo.yaml
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cloudseg.data import open_cache, write_synthetic
from sweep.study.spec import load_spec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def run_once(workers: int, trials: int, study: str, data: Path, work: Path) -> dict[str, float]:
    """One `sweep run` on a fresh storage; returns the rates and per-trial times."""
    db = work / f"workers-{workers}.db"
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(max(1, cores // workers)),
        "CLOUDSEG_CACHE_DIR": str(work / "cache"),
        "WANDB_MODE": "disabled",
    }
    cmd = [
        str(Path(sys.executable).with_name("sweep")),
        "run",
        "--study",
        study,
        "--trials",
        str(trials),
        "--workers",
        str(workers),
        "--storage",
        f"sqlite:///{db}",
        "--data",
        str(data),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start

    name = load_spec(study).name
    done = [
        t
        for t in optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
        if t.state in FINISHED
    ]
    first = min(t.datetime_start for t in done)
    ends = sorted(t.datetime_complete for t in done)
    span = (ends[-1] - first).total_seconds()
    # Steady state: after every worker has finished its first trial (start-up paid).
    steady = (ends[-1] - ends[workers - 1]).total_seconds()
    return {
        "finished": len(done),
        "wall_s": wall,
        "per_hour_wall": len(done) / wall * 3600,
        "per_hour_trials": len(done) / span * 3600,
        "per_hour_steady": (len(done) - workers) / steady * 3600 if steady > 0 else 0.0,
        "mean_trial_s": sum(t.duration.total_seconds() for t in done) / len(done),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default="demo", help="study name or spec file (default: demo)")
    p.add_argument("--workers", type=int, default=4, help="K, compared against 1 worker")
    p.add_argument("--trials", type=int, default=8, help="finished trials per configuration")
    p.add_argument("--data", type=Path, help="data root (default: a fresh synthetic demo tree)")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cloudsweep-bench-workers-"))
    try:
        data = args.data or write_synthetic(
            work / "synthetic", train_scenes=6, test_scenes=2, scene_size=(800, 800), seed=0
        )
        # Pack the data cache once, where both runs look for it, so neither pays for it.
        os.environ["CLOUDSEG_CACHE_DIR"] = str(work / "cache")
        open_cache(data)
        results = {k: run_once(k, args.trials, args.study, data, work) for k in (1, args.workers)}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"study {args.study}: {args.trials} trials per configuration, {os.cpu_count()} cores")
    print(
        f"{'workers':>8} {'finished':>9} {'wall s':>8} {'trials/h (wall)':>16} "
        f"{'trials/h (trials)':>18} {'trials/h (steady)':>18} {'mean trial s':>13}"
    )
    for k, r in results.items():
        print(
            f"{k:>8} {r['finished']:>9} {r['wall_s']:>8.1f} {r['per_hour_wall']:>16.0f} "
            f"{r['per_hour_trials']:>18.0f} {r['per_hour_steady']:>18.0f} "
            f"{r['mean_trial_s']:>13.1f}"
        )
    one, many = results[1], results[args.workers]
    print(
        f"ratio {args.workers} vs 1 workers: "
        f"{many['per_hour_wall'] / one['per_hour_wall']:.2f}x (wall), "
        f"{many['per_hour_trials'] / one['per_hour_trials']:.2f}x (trials), "
        f"{many['per_hour_steady'] / max(one['per_hour_steady'], 1e-9):.2f}x (steady)"
    )


if __name__ == "__main__":
    main()

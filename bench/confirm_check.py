"""Is the confirmed answer honest? Run a confirmed study, then train its #1 config again on fresh
draws (new training subset, initialisation, crops and flips) and check that the mean of those
fresh runs lies inside the interval `sweep best` claimed for #1, and how far the search value
(the draw that selected #1) was from it: the winner's curse the confirmed score avoids.

    python bench/confirm_check.py                  # loss-search, small, 12 trials, 5 fresh runs
    python bench/confirm_check.py --trials 20 --fresh 8

Runs on the small synthetic tree of bench/time_to_answer.py (written once). Prints `sweep best`
and one line per figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default="loss-search")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--fresh", type=int, default=5)
    p.add_argument("--root", type=Path, default=Path("/tmp/tta-small"))
    p.add_argument("--keep", type=Path, default=None, help="keep the study in this folder")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from time_to_answer import SCALES, ensure_tree, sweep_command

    from cloudseg import run_training
    from sweep.api import ranked_configs

    ensure_tree(args.root.absolute(), "small")
    overrides = [*SCALES["small"]["overrides"], "stop_search=null"]
    folder = args.keep or Path(tempfile.mkdtemp(prefix="confirm-check-"))
    folder.mkdir(parents=True, exist_ok=True)
    sweep = sweep_command()
    subprocess.run([*sweep, "run", "--study", args.study, "--trials", str(args.trials),
                    "--data", str(args.root.absolute()), "--no-progress",
                    *[a for o in overrides for a in ("--set", o)]],
                   cwd=folder, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*sweep, "best", "--study", args.study], cwd=folder, check=True)
    configs, _ = ranked_configs(args.study, storage=f"sqlite:///{folder / 'sweeps.db'}")
    first = configs[0]
    from sweep.record import load

    config = load(first.runs[0] if first.runs else first.origin, ("config",)).run_config("#1")
    fresh = []
    for k in range(args.fresh):
        seed = 900_001 + k  # draws no trial of the study used
        run = run_training(config.with_overrides({"data.subset_seed": seed, "train.seed": seed}))
        fresh.append(run.best_record.score(config.train.val_metric, config.train.select_at))
    mean = statistics.fmean(fresh)
    ci = first.interval()
    inside = ci is not None and ci[0] <= mean <= ci[1]
    print(f"#1 (config of trial {first.origin.number}): claimed {first.describe()}; "
          f"search value {first.search_value:.4f}")
    print(f"{args.fresh} fresh runs: {', '.join(f'{v:.4f}' for v in fresh)}; mean {mean:.4f}")
    print(f"fresh mean inside #1's claimed interval: {'yes' if inside else 'NO'}; claimed - fresh "
          f"{first.mean - mean:+.4f}; search value - fresh {first.search_value - mean:+.4f}")
    print(f"study kept in {folder}" if args.keep else "")


if __name__ == "__main__":
    main()

"""When may a pruner first compare trials? The rank correlation of each epoch's validation value
with the final one, over an unpruned study: a pruner that starts at epoch k ranks trials by
their epoch-k values, so it keeps the configs full training would keep only where that
correlation is high. The shipped specs' `pruner.min_resource` is chosen from this (see their
comments).

    python bench/pruning_start.py                 # loss-search, small scale, 12 trials x 6 epochs
    python bench/pruning_start.py --study model-search --trials 16 --epochs 8

Prints Spearman's rho (and Kendall's tau) of epoch k against the last epoch, k = 1 .. epochs-1,
on the small synthetic tree of bench/time_to_answer.py (written once).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default="loss-search")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--root", type=Path, default=Path("/tmp/tta-small"))
    args = p.parse_args()
    import optuna
    from scipy.stats import kendalltau, spearmanr

    sys.path.insert(0, str(Path(__file__).parent))
    from time_to_answer import SCALES, ensure_tree, sweep_command

    ensure_tree(args.root.absolute(), "small")
    overrides = [*SCALES["small"]["overrides"], f"budget.epochs={args.epochs}",
                 "pruner.name=none", "confirm=null", "stop_search=null"]
    overrides = [o for o in overrides if not o.startswith("budget.epochs=2")]
    with tempfile.TemporaryDirectory(prefix="pruning-start-") as tmp:
        cmd = [*sweep_command(), "run", "--study", args.study, "--trials", str(args.trials),
               "--data", str(args.root.absolute()), "--no-progress",
               *[a for o in overrides for a in ("--set", o)]]
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        study = optuna.load_study(study_name=args.study, storage=f"sqlite:///{tmp}/sweeps.db")
        curves = [t.intermediate_values for t in study.get_trials(deepcopy=False)
                  if t.state.name == "COMPLETE" and len(t.intermediate_values) == args.epochs
                  and not t.user_attrs.get("failure")]
    final = [c[args.epochs] for c in curves]
    print(f"{args.study}: {len(curves)} complete unpruned trials of {args.epochs} epochs "
          f"(small synthetic tree, {' '.join(overrides)})")
    for k in range(1, args.epochs):
        rho = spearmanr([c[k] for c in curves], final).statistic
        tau = kendalltau([c[k] for c in curves], final).statistic
        print(f"  epoch {k} vs epoch {args.epochs}: Spearman rho {rho:+.2f}, "
              f"Kendall tau {tau:+.2f}")


if __name__ == "__main__":
    main()

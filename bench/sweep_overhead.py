"""Sweep overhead and pruning savings on the demo study, measured in one run on this machine.

1. Overhead: wall time of `sweep run --study demo --trials N` (a real subprocess on a fresh
   SQLite file; the synthetic data and its cache are prepared first, as a second run of
   `make demo` finds them) against the sum of its trials' fit times (`fit_seconds`).
   Target: <= 1.15x. It is split into the one-time start-up (process start, the forkserver's
   torch import, study set-up, up to the first trial's end less its fit), the per-trial cost
   of the trials after the first, and what follows the last trial; and where the device
   waits: the start-up to the first training step, and the mean gap from one trial's last
   step to the next trial's first (after a pruned trial: goal <= 0.1 s; after a complete one,
   which draws its images: goal <= 0.3 s), from each trial's `fit_started_at`.
2. Pruning: the same study, same sampler seed and trial count, with the spec's pruner and with
   `pruner: none`: epochs trained and best validation IoU. Targets: pruning saves >= 40% of
   the epochs, and the best IoU stays within 0.01. The two studies draw different
   configurations once TPE starts learning, so the unpruned study's trials are also replayed
   through the pruner: what pruning alone saves and loses on the same configurations.

    python bench/sweep_overhead.py [--trials 20] [--study demo] [--crop 192]

The start-up is fixed, so the ratio falls as a study gets longer: more `--trials`, or
`--crop 192` (steps about four times longer). Its floor is printed, measured in the same run:
a fresh process importing torch and torch._dynamo, which the first trial needs before its
first step (4.3 s of this machine's 2 cores; 0.15x of the default bench's sum of fit).
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

import cloudseg
import sweep
from cloudseg.data import open_cache, write_synthetic
from sweep.study.spec import find_spec_file

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def compile_sources() -> None:
    """Write cloudseg's and sweep's bytecode, as any run after the first finds it (a machine
    with PYTHONDONTWRITEBYTECODE set, as this one, would compile every module in every process
    of every run: a second of the start-up here).
    """
    import compileall

    for package in (cloudseg, sweep):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def torch_import_seconds(repeats: int = 3) -> float:
    """Wall time of a fresh process that imports torch and torch._dynamo (every torch optimizer
    imports it) and nothing else, the best of `repeats`: what the first trial of any run waits
    for before its first step, the floor of the one-time start-up.
    """
    code = "import torch, torch._dynamo"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(spec_path: Path, folder: Path, trials: int, data: Path) -> None:
    cmd = [str(Path(sys.executable).with_name("sweep")), "run", "--study", str(spec_path),
           "--trials", str(trials), "--data", str(data), "--no-progress"]
    subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL)


def _overhead(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's time beyond its fit: its process, data set-up, images, storage writes."""
    assert trial.duration is not None
    return trial.duration.total_seconds() - trial.user_attrs.get("fit_seconds", 0.0)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def gaps(trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[float]]:
    """Seconds from each trial's end of training to the next trial's first step (its fit's
    start, `fit_started_at`), by the state of the trial that ended: what a trial's images,
    storage writes, the sampler and the next trial's set-up leave the device idle for.
    """
    out: dict[str, list[float]] = {"PRUNED": [], "COMPLETE": []}
    timed = [t for t in trials if t.user_attrs.get("fit_started_at") is not None]
    for before, after in zip(timed, timed[1:], strict=False):
        end = before.user_attrs["fit_started_at"] + before.user_attrs["fit_seconds"]
        out[before.state.name].append(after.user_attrs["fit_started_at"] - end)
    return out


def measure(folder: Path, name: str, started: float, wall: float) -> dict[str, float]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'sweeps.db'}")
    trials = study.get_trials(states=FINISHED)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    first, rest = trials[0], trials[1:]
    assert first.datetime_complete is not None and trials[-1].datetime_complete is not None
    between = gaps(sorted(study.get_trials(states=FINISHED), key=lambda t: t.number))
    return {
        # launch → the first trial's first training step
        "first_step": first.user_attrs.get("fit_started_at", float("nan")) - started,
        "gap_pruned": _mean(between["PRUNED"]), "gap_complete": _mean(between["COMPLETE"]),
        "n_gap_pruned": len(between["PRUNED"]), "n_gap_complete": len(between["COMPLETE"]),
        # launch → the first trial's end, less its fit: process start, imports, study set-up
        "startup": first.datetime_complete.timestamp() - started
        - first.user_attrs.get("fit_seconds", 0.0),
        "pruned_each": _mean([_overhead(t) for t in rest if t.state == TrialState.PRUNED]),
        "complete_each": _mean([_overhead(t) for t in rest if t.state == TrialState.COMPLETE]),
        "tail": started + wall - trials[-1].datetime_complete.timestamp(),
        "fit": sum(t.user_attrs.get("fit_seconds", 0.0) for t in trials),
        "trial": sum(t.duration.total_seconds() for t in study.get_trials() if t.duration),
        "epochs": sum(len(t.user_attrs.get("history", [])) for t in trials),
        "best": max((t.value for t in done if t.value is not None), default=float("nan")),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "trials": len(trials),
    }


def replay_pruner(folder: Path, name: str, spec_path: Path) -> dict[str, float]:
    """The unpruned study's trials, in order, replayed through the spec's pruner (each epoch's
    IoU reported, the trial pruned where the pruner says): what pruning alone costs on the same
    configurations. The two studies above draw different configurations after the sampler's
    start-up trials (TPE learns from what each study kept), so their best IoUs differ by the
    search's luck as well as by the pruner.
    """
    from sweep.study.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    unpruned = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'sweeps.db'}")
    spec = load_spec(spec_path)
    replay = optuna.create_study(direction=spec.direction, pruner=spec.build_pruner(),
                                 sampler=optuna.samplers.RandomSampler(0))
    epochs, kept = 0, []
    for done in unpruned.get_trials(states=(TrialState.COMPLETE,)):
        trial = replay.ask()
        for epoch, value in sorted(done.intermediate_values.items()):
            trial.report(value, epoch)
            epochs += 1
            if trial.should_prune():
                replay.tell(trial, state=TrialState.PRUNED)
                break
        else:
            replay.tell(trial, done.value)
            kept.append(done.value)
    return {"epochs": epochs, "best": max(kept, default=float("nan"))}


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
        data = write_synthetic(root / "data", train_scenes=6, test_scenes=2,  # `make demo`'s
                               scene_size=(1100, 1100), seed=spec.get("seed", 0))
        open_cache(data)  # packed once, as a second `make demo` finds it
        compile_sources()  # and the bytecode a first run writes
        results = {}
        floor = torch_import_seconds()
        for label, pruner in (("pruned", spec["pruner"]), ("unpruned", {"name": "none"})):
            folder = root / label
            folder.mkdir()
            variant = {**spec, "pruner": pruner, "data": None, "synthesize_if_missing": False}
            spec_path = folder / f"{spec['name']}.yaml"
            spec_path.write_text(yaml.safe_dump(variant, sort_keys=False))
            started, t0 = time.time(), time.perf_counter()
            run(spec_path, folder, args.trials, data)
            wall = time.perf_counter() - t0
            results[label] = {"wall": wall, **measure(folder, spec["name"], started, wall)}
        replayed = replay_pruner(root / "unpruned", spec["name"], root / "pruned" / spec_path.name)
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
    print(f"overhead: wall / sum of fit = {overhead:.2f}x (target <= 1.15x); "
          f"without pruning {b['wall'] / b['fit']:.2f}x")
    print(f"  one-time start-up {a['startup']:.2f} s (process, imports, study set-up, the first "
          f"trial's overhead); each later trial: pruned {a['pruned_each']:.3f} s, complete "
          f"{a['complete_each']:.3f} s (with its images); after the last trial {a['tail']:.2f} s")
    print(f"  start-up to the first training step {a['first_step']:.2f} s; mean gap from a "
          f"trial's last step to the next one's first: after a pruned trial "
          f"{a['gap_pruned']:.3f} s (n={a['n_gap_pruned']}, goal <= 0.1 s), after a complete "
          f"one {a['gap_complete']:.3f} s (n={a['n_gap_complete']}, goal <= 0.3 s)")
    print(f"  without the one-time start-up: (wall - start-up) / sum of fit = "
          f"{(a['wall'] - a['startup']) / a['fit']:.2f}x")
    print(f"  floor of the start-up: a fresh `python -c 'import torch, torch._dynamo'` takes "
          f"{floor:.2f} s here = {floor / a['fit']:.2f}x of the sum of fit, so no run of this "
          f"bench can show less than {1 + floor / a['fit']:.2f}x")
    print(f"  of which inside trials (fork, data prep, images, uploads): sum of trial time / "
          f"sum of fit = {a['trial'] / a['fit']:.2f}x; outside (start-up, sampler, storage): "
          f"wall / sum of trial time = {a['wall'] / a['trial']:.2f}x")
    print(f"pruning saves {saved:.0%} of the epochs (target >= 40%); best IoU "
          f"{a['best']:.4f} vs {b['best']:.4f} without pruning (gap {gap:+.4f}, target <= 0.01)")
    print(f"  the pruner alone, replayed over the unpruned study's {b['trials']} trials: saves "
          f"{1 - replayed['epochs'] / b['epochs']:.0%} of the epochs; best IoU kept "
          f"{replayed['best']:.4f} vs {b['best']:.4f} (gap {b['best'] - replayed['best']:+.4f}): "
          f"the rest of the gap above is the two searches drawing different configurations")


if __name__ == "__main__":
    main()

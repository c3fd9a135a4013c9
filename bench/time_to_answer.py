"""Time to answer: the wall time of `sweep run --study loss-search --trials N` on this machine.

The user's question is answered when that command ends, so this runs the shipped spec as a user
would (a real `sweep run` subprocess on a fresh SQLite file) over a synthetic tree the size of
38-Cloud's training set and prints: wall time, finished / pruned search trials and the
confirmation runs that follow them (the spec's `confirm`), images/s over the study, the sum of
the trials' fit times, the GPU's mean utilisation (CUDA, via nvidia-smi), and the wall time of
40 trials extrapolated (the first trial with the start-up, the later ones each as long as
those measured, the confirmation runs as the spec plans them).

    python bench/time_to_answer.py --trials 12                 # on a GPU: the full-size tree
    python bench/time_to_answer.py --scale small --trials 3    # CPU smoke run (minutes)
    python bench/time_to_answer.py --set fixed.train.compile=true   # a spec override
    python bench/time_to_answer.py --set confirm=null --set stop_search=null   # search only

The full-size tree (18 scenes of 7761 x 8200 px -> 8,316 patches, 38-Cloud has 8,400; centred
padding) is written once to --root and reused; it is drawn at 1/4 resolution and enlarged
(`write_synthetic(coarse=4)`) so that writing it takes a minute, not twenty. The small scale
(18 scenes of 800 px, 72 patches, 2 short epochs on 64 px crops) only proves the path runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

SCALES = {
    "full": {"size": (7761, 8200), "coarse": 4, "overrides": []},
    "small": {"size": (800, 800), "coarse": 1, "overrides": [
        "budget.epochs=2", "budget.crop=64", "budget.batches_per_epoch=2",
        "budget.max_val_patches=8", "execution.trial_threads=1", "fixed.train.num_workers=1",
    ]},
}
SCENES = 18


def ensure_tree(root: Path, scale: str) -> float:
    """Write the synthetic tree once (marker file), pack its cache; seconds spent."""
    from cloudseg.data import open_cache, write_synthetic

    start = time.perf_counter()
    if not (root / ".complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        cfg = SCALES[scale]
        write_synthetic(root, train_scenes=SCENES, test_scenes=0, scene_size=cfg["size"],
                        seed=0, coarse=cfg["coarse"], workers=min(8, os.cpu_count() or 1))
        (root / ".complete").write_text("")
    cache = open_cache(root, progress=True)
    print(f"data: {len(cache)} training patches from {len(cache.scenes)} scenes at {root} "
          f"(38-Cloud: 8,400 from 18)")
    return time.perf_counter() - start


class GpuSampler:
    """Mean GPU utilisation from `nvidia-smi` sampled every 500 ms while the study runs."""

    def __init__(self, log: Path):
        self.log, self.proc = log, None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=log.open("w"), stderr=subprocess.DEVNULL)

    def stop(self) -> str:
        if self.proc is None:
            return "n/a (no nvidia-smi)"
        self.proc.terminate()
        self.proc.wait()
        values = [float(v) for v in self.log.read_text().split() if v.replace(".", "").isdigit()]
        return f"{sum(values) / len(values):.0f}% ({len(values)} samples)" if values else "n/a"


def study_figures(db: Path, name: str, started: float) -> dict:
    """The study's search trials and confirmation runs (the spec's `confirm`: its top configs
    retrained after the search, part of the answer's wall time, a fixed number of runs that
    does not grow with --trials), training images and fit seconds over both.
    """
    import optuna
    from optuna.trial import TrialState

    from sweep.execution.confirm import confirms

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    images = 0
    for t in finished:
        cfg, data = t.user_attrs.get("config", {}), t.user_attrs.get("data", {})
        batch = cfg.get("optim", {}).get("batch_size", 1)
        steps = (data.get("n_train") or 0) // batch
        cap = cfg.get("train", {}).get("max_steps_per_epoch")
        steps = min(steps, cap) if cap else steps
        images += len(t.user_attrs.get("history", [])) * steps * batch
    search = [t for t in finished if confirms(t) is None]
    confirming = [t for t in finished if confirms(t) is not None]
    complete = [t for t in search if t.state == TrialState.COMPLETE]
    span = 0.0  # the confirmation phase: its first run's start to its last run's end
    if confirming:
        span = (max(t.datetime_complete for t in confirming)
                - min(t.datetime_start for t in confirming)).total_seconds()
    ends = sorted(t.datetime_complete.timestamp() for t in search)
    runs = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete]
    return {
        "complete_each": sum(runs) / len(runs) if runs else float("nan"),  # full budget
        "search": len(search),
        "first_end": ends[0] - started if ends else float("nan"),  # with the one-time start-up
        "later_each": (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else float("nan"),
        "pruned": sum(t.state == TrialState.PRUNED for t in search),
        "confirmations": len(confirming),
        "confirm_span": span,
        "fit": sum(t.user_attrs.get("fit_seconds", 0.0) for t in finished),
        "images": images,
        "best": max((t.value for t in complete if t.value is not None), default=float("nan")),
        "on_device": sorted({str(t.user_attrs.get("data", {}).get("data_on_device", "?"))
                             for t in finished}),
    }


def extrapolate(trials: int, r: dict, planned_confirmations: int) -> str:
    """Wall time of a `trials`-trial study from this one: the first trial with the one-time
    start-up, each later search trial as long as those measured, and the confirmation runs
    the spec plans (a fixed number: fewer ran here when fewer configs completed), each as long
    as the ones measured.
    """
    later = r["later_each"] if r["search"] > 1 else r["first_end"]  # one trial: an overestimate
    if r["confirmations"]:
        per_run, how = r["confirm_span"] / r["confirmations"], ""
    else:  # none ran (`--set confirm=null`): a confirmation run is a complete trial's budget
        per_run, how = r["complete_each"], " (as long as a complete search trial)"
    total = r["first_end"] + (trials - 1) * later + planned_confirmations * per_run
    return (f"{trials} trials extrapolated: {total / 60:.1f} min = the first trial with the "
            f"start-up {r['first_end']:.1f} s + {trials - 1} x {later:.1f} s per later trial + "
            f"{planned_confirmations} confirmation runs x {per_run:.1f} s{how}")


def sweep_command() -> list[str]:
    """The `sweep` console script beside this interpreter, else `python -m sweep.cli` (the
    device machine runs the checkout from PYTHONPATH, with no script installed).
    """
    script = Path(sys.executable).with_name("sweep")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sweep.cli"]


def run_until(cmd: list[str], folder: Path, deadline: float | None) -> int:
    """Run `sweep run`; past `deadline` seconds send it Ctrl-C (its running trial ends
    FAILED "interrupted", the finished ones stay) and give it 30 s to close. Its exit code.
    """
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        print(f"deadline of {deadline:g} s reached: the study is stopped (Ctrl-C)")
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def main() -> None:
    import torch

    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--study", default="loss-search")
    p.add_argument("--scale", choices=SCALES, default="full" if cuda else "small")
    p.add_argument("--root", type=Path, default=None, help="where the tree is written once")
    p.add_argument("--timeout", type=float, default=None,
                   help="sweep run --timeout: start no trial after this many seconds")
    p.add_argument("--deadline", type=float, default=None,
                   help="stop the study (Ctrl-C) after this many seconds and report the "
                        "trials that finished: the figures print even when a trial runs long")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="spec override, e.g. fixed.train.compile=true (repeatable)")
    p.add_argument("--prepare-only", action="store_true",
                   help="write and pack the tree (once), then stop: no study")
    args = p.parse_args()
    from sweep.study.spec import load_spec

    root = args.root or Path("data") / f"time-to-answer-{args.scale}"
    prep = ensure_tree(root.absolute(), args.scale)
    if args.prepare_only:
        print(f"data preparation: {prep:.1f} s")
        return
    # the scale's overrides, then the user's (a later --set of a key wins): sweep run's --set
    overrides = [*SCALES[args.scale]["overrides"], *args.set]
    spec = load_spec(args.study, overrides)  # a bad override fails here, before any work
    with tempfile.TemporaryDirectory(prefix="time-to-answer-") as tmp:
        folder = Path(tmp)
        cmd = [*sweep_command(), "run", "--study", args.study, "--trials", str(args.trials),
               "--data", str(root.absolute()), "--no-progress",
               *[arg for o in overrides for arg in ("--set", o)]]
        if args.timeout:
            cmd += ["--timeout", str(args.timeout)]
        gpu = GpuSampler(folder / "gpu.log")
        start, started = time.perf_counter(), time.time()
        rc = run_until(cmd, folder, args.deadline)
        wall = time.perf_counter() - start
        if rc:
            print(f"sweep run exited {rc}; figures below are for the trials that finished")
        utilisation = gpu.stop()
        r = study_figures(folder / "sweeps.db", spec.name, started)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"study {args.study} ({args.scale} scale), {args.trials} trials on {device}; "
          f"overrides: {' '.join(overrides) or 'none'}")
    print(f"data preparation (once, not in the wall time): {prep:.1f} s")
    trials_word = "trial" if r["search"] == 1 else "trials"
    runs_word = "run" if r["confirmations"] == 1 else "runs"
    print(f"wall time: {wall:.1f} s ({wall / 60:.2f} min); {r['search']} search {trials_word} "
          f"finished ({r['pruned']} pruned), then {r['confirmations']} confirmation {runs_word} "
          f"({r['confirm_span']:.1f} s); best IoU {r['best']:.4f}; data on device: "
          f"{r['on_device']}")
    ratio = wall / max(r["fit"], 1e-9)
    print(f"sum of fit times: {r['fit']:.1f} s; wall / sum of fit = {ratio:.2f}x")
    print(f"images/s over the study: {r['images'] / wall:.1f} ({r['images']} training images)")
    print(f"GPU utilisation over the study: {utilisation}")
    confirm = load_spec(args.study).confirm  # what the user's run would confirm
    print(extrapolate(40, r, 0 if confirm is None else confirm.top * confirm.repeats))


if __name__ == "__main__":
    main()

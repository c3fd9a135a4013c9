"""Time to answer: the wall time of `sweep run --study loss-search --trials N` on this machine.

The user's question is answered when that command ends, so this runs the shipped spec as a user
would (a real `sweep run` subprocess on a fresh SQLite file) over a synthetic tree the size of
38-Cloud's training set and prints: wall time, finished / pruned trials, images/s over the
study, the sum of the trials' fit times, and the GPU's mean utilisation (CUDA, via nvidia-smi).

    python bench/time_to_answer.py --trials 12                 # on a GPU: the full-size tree
    python bench/time_to_answer.py --scale small --trials 3    # CPU smoke run (minutes)
    python bench/time_to_answer.py --set fixed.train.compile=true   # a spec override

The full-size tree (18 scenes of 7761 x 8200 px -> 8,316 patches, 38-Cloud has 8,400; centred
padding) is written once to --root and reused; it is drawn at 1/4 resolution and enlarged
(`write_synthetic(coarse=4)`) so that writing it takes a minute, not twenty. The small scale
(18 scenes of 800 px, 72 patches, 2 short epochs on 64 px crops) only proves the path runs.
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

SCALES = {
    "full": {"size": (7761, 8200), "coarse": 4, "overrides": {}},
    "small": {"size": (800, 800), "coarse": 1, "overrides": {
        "budget.epochs": 2, "budget.crop": 64, "budget.batches_per_epoch": 2,
        "budget.max_val_patches": 8, "execution.trial_threads": 1,
        "fixed.train.num_workers": 0,
    }},
}
SCENES = 18


def parse_value(text: str):
    """`--set key=value` values as YAML scalars (true, 3, 0.5, null, a string)."""
    return yaml.safe_load(text)


def apply(spec: dict, overrides: dict) -> dict:
    """Set dotted keys (`budget.epochs`, `fixed.train.compile`) in a nested spec dict."""
    for dotted, value in overrides.items():
        node = spec
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return spec


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


def study_figures(db: Path, name: str) -> dict:
    import optuna
    from optuna.trial import TrialState

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
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    return {
        "finished": len(finished),
        "pruned": sum(t.state == TrialState.PRUNED for t in finished),
        "fit": sum(t.user_attrs.get("fit_seconds", 0.0) for t in finished),
        "images": images,
        "best": max((t.value for t in complete if t.value is not None), default=float("nan")),
        "on_device": sorted({str(t.user_attrs.get("data", {}).get("data_on_device", "?"))
                             for t in finished}),
    }


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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="spec override, e.g. fixed.train.compile=true (repeatable)")
    args = p.parse_args()
    from sweep.study.spec import find_spec_file

    root = args.root or Path("data") / f"time-to-answer-{args.scale}"
    prep = ensure_tree(root.absolute(), args.scale)
    overrides = {**SCALES[args.scale]["overrides"]}
    overrides.update(dict((kv.split("=", 1)[0], parse_value(kv.split("=", 1)[1]))
                          for kv in args.set))
    spec = apply(yaml.safe_load(find_spec_file(args.study).read_text()), overrides)
    spec["data"] = None
    with tempfile.TemporaryDirectory(prefix="time-to-answer-") as tmp:
        folder = Path(tmp)
        spec_path = folder / f"{spec['name']}.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        cmd = [str(Path(sys.executable).with_name("sweep")), "run", "--study", str(spec_path),
               "--trials", str(args.trials), "--data", str(root.absolute()), "--no-progress"]
        if args.timeout:
            cmd += ["--timeout", str(args.timeout)]
        gpu = GpuSampler(folder / "gpu.log")
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=folder, stdout=subprocess.DEVNULL).returncode
        wall = time.perf_counter() - start
        if rc:
            print(f"sweep run exited {rc}; figures below are for the trials that finished")
        utilisation = gpu.stop()
        r = study_figures(folder / "sweeps.db", spec["name"])
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"study {args.study} ({args.scale} scale), {args.trials} trials on {device}; "
          f"overrides: {overrides or 'none'}")
    print(f"data preparation (once, not in the wall time): {prep:.1f} s")
    print(f"wall time: {wall:.1f} s ({wall / 60:.2f} min); finished {r['finished']}, "
          f"pruned {r['pruned']}; best IoU {r['best']:.4f}; data on device: {r['on_device']}")
    ratio = wall / max(r["fit"], 1e-9)
    print(f"sum of fit times: {r['fit']:.1f} s; wall / sum of fit = {ratio:.2f}x")
    print(f"images/s over the study: {r['images'] / wall:.1f} ({r['images']} training images)")
    print(f"GPU utilisation over the study: {utilisation}")
    per_trial = wall / max(r["finished"], 1)
    print(f"40 trials extrapolated: {40 * per_trial / 60:.1f} min (at {per_trial:.1f} s per trial)")


if __name__ == "__main__":
    main()

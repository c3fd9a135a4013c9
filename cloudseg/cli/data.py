"""`cloudseg` data commands (synth, prepare, stats); registered on import by cloudseg.cli.
Each parses its arguments and calls cloudseg.data; library errors become one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cloudseg.cli.registry import command


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="new folder to write the data set into")
    p.add_argument("--train-scenes", type=int, default=4, metavar="N")
    p.add_argument("--test-scenes", type=int, default=2, metavar="M")
    p.add_argument("--scene-size", type=int, nargs=2, default=(800, 800), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--train-scene-gts", action="store_true",
                   help="also write the training scenes' whole-scene gts (Entire_scene_gts/), "
                   "which train.ignore_nodata: padding needs")
    p.add_argument("--real-test-ids", action="store_true",
                   help="name the test scenes after the first M real 38-Cloud test scenes (the "
                   "ids of the shipped Cloud-Net table), so reports put ours beside Cloud-Net")


@command("synth", "write a seeded synthetic data set in the exact 38-Cloud layout", _synth_args)
def synth(args: argparse.Namespace) -> int:
    from cloudseg.data import index_dataset, write_synthetic
    from cloudseg.scenes.reference import cloudnet_scene_ids

    ids = cloudnet_scene_ids() if args.real_test_ids else None
    out = write_synthetic(args.out, args.train_scenes, args.test_scenes,
                          tuple(args.scene_size), args.seed, test_ids=ids,
                          train_scene_gts=args.train_scene_gts)
    n_train = len(index_dataset(out, "train"))
    n_test = len(index_dataset(out, "test")) if args.test_scenes else 0
    print(f"wrote {out}: {n_train} training and {n_test} test patches "
          f"({args.train_scenes}+{args.test_scenes} scenes, seed {args.seed})")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="38-Cloud or 95-Cloud root folder")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="cache folder (default: $CLOUDSEG_CACHE_DIR/<key> or ~/.cache/cloudseg)")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    _data_args(p)
    p.add_argument("--force", action="store_true", help="rebuild even when the cache is fresh")


@command("prepare", "validate a data tree and pack its training patches into a cache",
         _prepare_args)
def prepare(args: argparse.Namespace) -> int:
    from cloudseg.data import prepare_cache

    cache = prepare_cache(args.data, args.cache, progress=True, force=args.force)
    size = (cache.images.nbytes + cache.masks.nbytes) / 2**20
    print(f"cache ready: {len(cache)} patches from {len(cache.scenes)} scenes, "
          f"{size:.0f} MiB at {cache.path}")
    return 0


def _stats_args(p: argparse.ArgumentParser) -> None:
    _data_args(p)
    p.add_argument("--plots", type=Path, default=None, metavar="DIR", help="write PNG plots here")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")


@command("stats", "class balance (pos_weight), band statistics and separability", _stats_args)
def stats(args: argparse.Namespace) -> int:
    from cloudseg.data import compute_stats, open_cache, plot_stats

    cache = open_cache(args.data, args.cache, progress=not args.json)
    result = compute_stats(cache)
    plots = plot_stats(result, args.plots) if args.plots else []
    if args.json:
        print(json.dumps(result.as_dict() | {"plots": [str(p) for p in plots]}, indent=2))
        return 0
    _print_table(result.as_dict(), plots)
    return 0


def _print_table(d: dict, plots: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{d['n_patches']} patches: {d['cloud_pixels']:,} cloud, "
                  f"{d['background_pixels']:,} clear, {d['nodata_pixels']:,} no-data pixels "
                  f"(cloud fraction {d['cloud_fraction']:.4f})")
    console.print(f"pos_weight = background / cloud = {_fmt(d['pos_weight'])} over valid pixels "
                  f"({_fmt(d['pos_weight_all_pixels'])} counting no-data as background)")
    table = Table(title="bands over valid pixels (DN)")
    for col in ("band", "mean", "std", "cloud-vs-clear AUC"):
        table.add_column(col, justify="right")
    for band, v in d["bands"].items():
        table.add_row(band, _fmt(v["mean"], ".1f"), _fmt(v["std"], ".1f"), _fmt(v["auc"]))
    console.print(table)
    for p in plots:
        console.print(f"plot: {p}")


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)

"""`cloudseg` predict commands; registered on import by cloudseg.cli.

`cloudseg predict BUNDLE DATA --out DIR` writes whole-scene probability and mask GeoTIFFs;
`cloudseg evaluate PRED_DIR GT_DIR` scores them with the 38-Cloud protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cloudseg.cli.registry import command

if TYPE_CHECKING:
    from rich.table import Table

    from cloudseg.scenes.evaluate import EvaluationReport


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path, help="checkpoint bundle (config.yaml + model.safetensors)")
    p.add_argument("data", type=Path, help="38-Cloud / 95-Cloud data root")
    p.add_argument("--out", type=Path, required=True, help="output folder for the GeoTIFFs")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x cost)")
    p.add_argument(
        "--overlap",
        type=int,
        default=0,
        metavar="PX",
        help="sliding-window overlap in pixels, blended to remove seams (e.g. 64)",
    )
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward pass (default: 16 on CUDA, 1 on the CPU)")
    p.add_argument("--workers", type=int, default=None,
                   help="patch-reading threads (default: min(8, CPU count))")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--threshold",
        default=None,
        help="binary mask threshold (default: the bundle's train.threshold)",
    )


@command("predict", "predict whole-scene cloud masks as GeoTIFFs", _predict_args)
def predict(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cloudseg.scenes.evaluate import parse_threshold
    from cloudseg.scenes.predict import predict_scenes

    threshold = None if args.threshold is None else parse_threshold(args.threshold)
    result = predict_scenes(
        args.bundle,
        args.data,
        args.out,
        args.split,
        tta=args.tta,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        threshold=threshold,
        progress=True,
        workers=args.workers,
    )
    table = Table(title=f"{len(result.scenes)} scenes → {args.out}")
    for col in ("scene", "height × width", "patches", "georeferenced"):
        table.add_column(col)
    for s in result.scenes:
        table.add_row(s.scene, f"{s.shape[0]} × {s.shape[1]}", str(s.patches), str(s.georeferenced))
    console = Console()
    console.print(table)
    console.print(
        f"{result.patches} patches in {result.seconds:.1f} s "
        f"({result.patches_per_s:.1f} patches/s) on {result.device}"
    )
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pred_dir",
        type=Path,
        help="folder with <scene>_prob.tif (cloudseg predict) or per-patch predictions "
        "*patch_<idx>_<row>_by_<col>_<scene>.TIF (float 0-1 or uint8 0-255), or full-scene "
        "binary masks <scene>_mask.tif / <scene>.TIF (uint8 0/1, uint8 0/255 or 1-bit: cloud "
        "where > 0). A uint8 probability input holding only 0 and 1 is refused (see --masks)",
    )
    p.add_argument(
        "gt_dir",
        type=Path,
        help="38-Cloud_test/Entire_scene_gts/, or a folder that contains it (the data root)",
    )
    p.add_argument("--threshold", default="12/255", help="cloud where probability > this")
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="also score at this bundle's threshold (its train.threshold, what `cloudseg "
        "predict` used for its masks) and show it beside --threshold",
    )
    p.add_argument(
        "--footprint",
        action="store_true",
        help="score only pixels inside the scene footprint (NOT the 38-Cloud protocol, "
        "which scores every pixel); needs cloudseg predict's GeoTIFFs",
    )
    p.add_argument(
        "--masks",
        action="store_true",
        help="read every prediction as a binary mask (uint8 0/1 or 0/255, 1-bit): cloud where "
        "> 0, --threshold unused; values other than 0/1 or 0/255 are refused",
    )
    p.add_argument(
        "--compare",
        choices=("cloudnet",),
        default=None,
        help="print ours beside a published table shipped with cloudseg, per scene and the "
        "means over the scenes both have (cloudnet: Cloud-Net on the 20 38-Cloud test scenes)",
    )
    p.add_argument(
        "--protocol",
        choices=("per-scene", "pooled"),
        default="per-scene",
        help="which summary leads (both are printed and saved)",
    )
    p.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="per-scene CSV (default PRED_DIR/evaluation.csv); summary JSON beside it",
    )


@command("evaluate", "score scene predictions with the 38-Cloud protocol", _evaluate_args)
def evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cloudseg.errors import ConfigError
    from cloudseg.scenes.evaluate import (
        SCENE_METRICS,
        evaluate_scenes,
        parse_threshold,
        write_scene_csv,
        write_summary_json,
    )

    if args.masks and args.bundle is not None:
        raise ConfigError("--masks with --bundle: binary masks have no threshold to vary")
    report = evaluate_scenes(
        args.pred_dir, args.gt_dir, parse_threshold(args.threshold), footprint=args.footprint,
        masks=args.masks,
    )
    csv_path = args.csv or args.pred_dir / "evaluation.csv"
    write_scene_csv(report, csv_path)
    json_path = write_summary_json(report, csv_path.with_suffix(".json"), args.protocol)

    names = [col for _, col in SCENE_METRICS]
    cut = ("binary masks, cloud where > 0" if report.masks
           else f"prediction > {report.threshold:.6f}")
    scenes = Table(title=f"per scene ({cut}; scored: {report.scored})")
    for col in ("scene", *names):
        scenes.add_column(col, justify="left" if col == "scene" else "right")
    for s in report.scenes:
        scenes.add_row(s.scene, *(f"{100 * getattr(s.metrics, a):.2f}" for a, _ in SCENE_METRICS))

    mean, pooled = report.mean, report.pooled
    summaries = {
        "per-scene": (
            f"38-Cloud protocol: mean over {len(report.scenes)} scenes (%)",
            [100 * mean[a] for a, _ in SCENE_METRICS],
        ),
        "pooled": (
            "pooled: counts summed over all scenes first, NOT comparable with papers (%)",
            [100 * getattr(pooled, a) for a, _ in SCENE_METRICS],
        ),
    }
    order = [args.protocol, *(p for p in summaries if p != args.protocol)]
    console = Console()
    console.print(scenes)
    for key in order:
        title, values = summaries[key]
        table = Table(title=title)
        for col in names:
            table.add_column(col, justify="right")
        table.add_row(*(f"{v:.2f}" for v in values))
        console.print(table)
    if args.bundle is not None:
        console.print(_side_by_side(args, report))
    if args.compare is not None:
        console.print(compare_table(report, args.compare))
    console.print(f"per-scene CSV: {csv_path}  summary: {json_path}")
    return 0


def _side_by_side(args: argparse.Namespace, report: EvaluationReport) -> Table:
    """The 38-Cloud per-scene means at --threshold and at the bundle's own threshold."""
    from rich.table import Table

    from cloudseg.scenes.evaluate import SCENE_METRICS, evaluate_scenes
    from cloudseg.training.checkpoint import check_bundle

    bundle_threshold = check_bundle(args.bundle).train.threshold
    at_bundle = evaluate_scenes(args.pred_dir, args.gt_dir, bundle_threshold,
                                footprint=args.footprint)
    table = Table(title=f"mean over {len(report.scenes)} scenes (%): --threshold vs the "
                        f"bundle's ({args.bundle})")
    for col in ("threshold", *(col for _, col in SCENE_METRICS)):
        table.add_column(col, justify="right")
    for label, rep in ((f"{report.threshold:.6f}", report),
                       (f"{bundle_threshold:.6f} (bundle)", at_bundle)):
        table.add_row(label, *(f"{100 * rep.mean[a]:.2f}" for a, _ in SCENE_METRICS))
    return table


def compare_table(report: EvaluationReport, name: str) -> Table:
    """Ours beside a published per-scene table: Jaccard per scene and the per-scene means."""
    from rich.table import Table

    from cloudseg.scenes.reference import compare_with_reference

    cmp = compare_with_reference(report, name)
    ours_mean, ref_mean = cmp.means()
    label = cmp.reference.label
    missing = f"; not in its table: {', '.join(cmp.unmatched)}" if cmp.unmatched else ""
    table = Table(title=f"Jaccard (%): ours at {report.threshold:.6f} beside {label} at "
                        f"12/255; {len(cmp.scenes)} shared scenes{missing}")
    table.add_column("scene", no_wrap=True, min_width=max(map(len, cmp.scenes), default=5))
    for col in ("ours", cmp.reference.name, "ours - ref"):
        table.add_column(col, justify="right", no_wrap=True)
    for scene in cmp.scenes:
        ours, ref = cmp.ours[scene]["iou"], cmp.theirs[scene]["iou"]
        table.add_row(scene, f"{100 * ours:.2f}", f"{100 * ref:.2f}", f"{100 * (ours - ref):+.2f}")
    ours, ref = ours_mean["iou"], ref_mean["iou"]
    table.add_row(f"mean over {len(cmp.scenes)} scenes", f"{100 * ours:.2f}", f"{100 * ref:.2f}",
                  f"{100 * (ours - ref):+.2f}")
    return table

"""Whole-scene cloud masks from a trained bundle: batched inference, stitching, GeoTIFFs.

For each scene of a 38-Cloud/95-Cloud split: assemble its padded band mosaic from the patches'
(row, col), slide a 384-pixel window over it (overlap=0: exactly the patch grid; overlap>0:
blended windows that remove patch-edge seams), crop to the scene size (from the whole-scene gt
when the tree has one, else the padded grid), and write `<scene>_prob.tif` (uint8 0-255) and
`<scene>_mask.tif` (0/255) as deflate-compressed, tiled GeoTIFFs. One scene is held in memory at
a time: for a 7,700² Landsat scene about 0.5 GB of bands plus 0.5 GB of float accumulators.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.config import TrainConfig
from cloudseg.errors import ConfigError
from cloudseg.evaluate import PROB_SUFFIX
from cloudseg.geotiff import (
    Georef,
    open_raster,
    read_georef,
    scene_georef_from_patch,
    to_uint8_probability,
    write_uint8,
)
from cloudseg.inference import WindowPredictor, predict_mosaic
from cloudseg.stitch import PATCH, check_complete, check_overlap, crop, grid_size, stitch

MASK_SUFFIX = "_mask.tif"


@dataclass(frozen=True)
class ScenePrediction:
    scene: str
    shape: tuple[int, int]  # (height, width) written
    patches: int
    prob_path: Path
    mask_path: Path
    georeferenced: bool


@dataclass(frozen=True)
class PredictResult:
    scenes: tuple[ScenePrediction, ...]
    patches: int  # source patches read
    windows: int  # network inputs evaluated (× 8 with TTA)
    seconds: float
    device: str

    @property
    def patches_per_s(self) -> float:
        return self.patches / self.seconds if self.seconds > 0 else float("inf")


def _scene_mosaic(scene: str, records: list) -> tuple[np.ndarray, tuple[int, int]]:
    from cloudseg.data import BANDS, read_band

    rows, cols = grid_size((r.id.row, r.id.col) for r in records)
    check_complete(scene, [(r.id.row, r.id.col) for r in records], rows, cols)
    patches = (
        (r.id.row, r.id.col, np.stack([read_band(r.files[b]) for b in BANDS])) for r in records
    )
    return stitch(patches, rows, cols), (rows * PATCH, cols * PATCH)


def predict_with_model(
    model,
    train_cfg: TrainConfig,
    data_root: str | Path,
    out_dir: str | Path,
    split: str = "test",
    *,
    tta: bool = False,
    overlap: int = 0,
    batch_size: int = 16,
    device: str = "auto",
    threshold: float | None = None,
    scenes: list[str] | None = None,
    progress: bool = False,
) -> PredictResult:
    """`predict_scenes` for a model already in memory (any module: (B,4,H,W) → (B,1,H,W) logits).
    The binary mask is `probability > threshold` (default `train_cfg.threshold`)."""
    from cloudseg.data import find_layout, index_dataset

    check_overlap(overlap)
    cut = train_cfg.threshold if threshold is None else threshold
    out_dir = Path(out_dir)
    by_scene: dict[str, list] = defaultdict(list)
    for rec in index_dataset(data_root, split=split):
        by_scene[rec.id.scene].append(rec)
    if scenes is not None:
        unknown = sorted(set(scenes) - set(by_scene))
        if unknown:
            raise ConfigError(f"scenes: {unknown} not in the {split} split of {data_root}")
        by_scene = {s: by_scene[s] for s in scenes}
    if not by_scene:
        raise ConfigError(f"{data_root}: no {split} patches found")
    gts = find_layout(data_root).scene_gts
    predictor = WindowPredictor(model, train_cfg, device, tta, batch_size)
    bar = _progress(progress, sum(len(v) for v in by_scene.values()))
    start, written = time.perf_counter(), []
    try:
        for scene in sorted(by_scene):
            written.append(
                _predict_scene(
                    scene,
                    by_scene[scene],
                    gts.get(scene),
                    predictor,
                    out_dir,
                    overlap,
                    batch_size,
                    cut,
                )
            )
            bar(len(by_scene[scene]), scene)
    finally:
        bar(0, None)
    seconds = time.perf_counter() - start
    n = sum(len(v) for v in by_scene.values())
    return PredictResult(
        tuple(written), n, predictor.evaluated, seconds, predictor.setup.describe()
    )


def _predict_scene(
    scene: str,
    records: list,
    gt: Path | None,
    predictor: WindowPredictor,
    out_dir: Path,
    overlap: int,
    batch_size: int,
    cut: float,
) -> ScenePrediction:
    mosaic, padded = _scene_mosaic(scene, records)
    prob = predict_mosaic(predictor, mosaic, overlap, PATCH, batch_size)
    shape = _shape_of(gt) if gt is not None else padded
    prob = crop(prob, shape)  # to the gt size; a gt larger than the grid is an error
    ref = _georef(gt, records[0])
    mask = np.where(prob > cut, 255, 0).astype(np.uint8)
    return ScenePrediction(
        scene,
        shape,
        len(records),
        write_uint8(out_dir / f"{scene}{PROB_SUFFIX}", to_uint8_probability(prob), ref),
        write_uint8(out_dir / f"{scene}{MASK_SUFFIX}", mask, ref),
        ref.present,
    )


def predict_scenes(
    bundle_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    split: str = "test",
    *,
    tta: bool = False,
    overlap: int = 0,
    batch_size: int = 16,
    device: str = "auto",
    threshold: float | None = None,
    progress: bool = False,
) -> PredictResult:
    """Predict every scene of `split` under `data_root` with the bundle's model and write
    `<scene>_prob.tif` / `<scene>_mask.tif` into `out_dir` (see the module docstring)."""
    from cloudseg.checkpoint import load_bundle

    model, config = load_bundle(bundle_dir, device="cpu")
    return predict_with_model(
        model,
        config.train,
        data_root,
        out_dir,
        split,
        tta=tta,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        threshold=threshold,
        progress=progress,
    )


def _shape_of(path: Path) -> tuple[int, int]:
    with open_raster(path) as src:
        return src.height, src.width


def _georef(gt: Path | None, first) -> Georef:
    """Prefer the scene-level gt's georeference; else derive it from a georeferenced patch."""
    if gt is not None and (ref := read_georef(gt)).present:
        return ref
    return scene_georef_from_patch(
        next(iter(first.files.values())), first.id.row, first.id.col, PATCH
    )


def _progress(enabled: bool, total: int) -> Callable[[int, str | None], None]:
    """A rich bar over patches (advance, scene) → None; (0, None) closes it."""
    if not enabled:
        return lambda n, scene: None
    from rich.progress import Progress

    bar = Progress(transient=False)
    task = bar.add_task("predicting", total=total)
    bar.start()

    def update(n: int, scene: str | None) -> None:
        if scene is None:
            bar.stop()
        else:
            bar.update(task, advance=n, description=scene[:40])

    return update

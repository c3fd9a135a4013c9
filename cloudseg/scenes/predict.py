"""Whole-scene cloud masks from a trained bundle: batched inference, stitching, GeoTIFFs.

For each scene of a 38-Cloud/95-Cloud split: assemble its padded band mosaic from the patches'
(row, col), slide a 384-pixel window over it (overlap=0: exactly the patch grid; overlap>0:
blended windows that remove patch-edge seams), crop the scene out of the middle of its grid
(38-Cloud pads scenes around their centre; the size comes from the whole-scene gt when the tree
has one, else the padded grid is written whole), and write `<scene>_prob.tif` (uint8
ceil(255·p)) and `<scene>_mask.tif` (0/255) as deflate-compressed, tiled GeoTIFFs (encodings:
cloudseg.scenes.geotiff).

Reading (PackBits TIFFs, `workers` threads, `cloudseg.scenes.reader`), the model (batch i on the
device while batch i-1 is blended) and writing (one background thread, `cloudseg.scenes.background`)
overlap, so the device is not left waiting on one CPU thread. Memory: for a 7,600 x 7,700
Landsat scene 472 MiB of bands, one 236 MiB float32 canvas (`BlendCanvas`) and a 59 MiB no-data
mask (`bench/predict.py --memory`: 0.97 GB peak above the process on the CPU); at most two
scenes' bands (look-ahead across a scene boundary) and three scenes' canvases (one being
predicted, two being encoded and written) exist at once.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloudseg.config import TrainConfig
from cloudseg.errors import ConfigError
from cloudseg.scenes.background import Background
from cloudseg.scenes.geotiff import (
    Georef,
    mask_product,
    open_raster,
    probability_product,
    read_georef,
    scene_georef_from_patch,
    to_uint8_mask,
    to_uint8_probability,
    write_uint8,
)
from cloudseg.scenes.grid import PATCH, SceneGrid
from cloudseg.scenes.inference import Pending, WindowPredictor, model_threads
from cloudseg.scenes.reader import SceneJob, prefetch_batches
from cloudseg.scenes.sources import PROB_SUFFIX
from cloudseg.scenes.stitch import (
    BlendCanvas,
    check_complete,
    check_overlap,
    grid_size,
    window_spots,
)

if TYPE_CHECKING:
    import torch

    from cloudseg.data import PatchRecord

MASK_SUFFIX = "_mask.tif"


@dataclass(frozen=True)
class ScenePrediction:
    """One written scene: its files, size and whether they carry a georeference."""

    scene: str
    shape: tuple[int, int]  # (height, width) written
    patches: int
    prob_path: Path
    mask_path: Path
    georeferenced: bool


@dataclass(frozen=True)
class PredictResult:
    """What `predict_scenes` wrote and how fast (patches read, windows evaluated, seconds)."""

    scenes: tuple[ScenePrediction, ...]
    patches: int  # source patches read
    windows: int  # network inputs evaluated (× 8 with TTA)
    seconds: float
    device: str

    @property
    def patches_per_s(self) -> float:
        """Source patches per second of the whole run (reading and writing included)."""
        return self.patches / self.seconds if self.seconds > 0 else float("inf")


def predict_with_model(
    model: torch.nn.Module,
    train_cfg: TrainConfig,
    data_root: str | Path,
    out_dir: str | Path,
    split: str = "test",
    *,
    tta: bool = False,
    overlap: int = 0,
    batch_size: int | None = None,
    device: str = "auto",
    threshold: float | None = None,
    scenes: list[str] | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> PredictResult:
    """`predict_scenes` for a model already in memory (any module: (B,4,H,W) → (B,1,H,W) logits).
    The binary mask is `probability > threshold` (default `train_cfg.threshold`); `workers`
    threads read patches (default `default_workers`); the output does not depend on it.
    """
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
    jobs = [_job(scene, by_scene[scene], overlap) for scene in sorted(by_scene)]
    predictor = WindowPredictor(model, train_cfg, device, tta, batch_size)
    batch_size = predictor.batch_size  # None: the device's fastest
    bar = _progress(progress, sum(len(j.records) for j in jobs))
    start = time.perf_counter()
    workers = workers or default_workers(predictor.setup.is_cuda)
    try:
        written = _run(
            jobs,
            predictor,
            batch_size,
            workers,
            bar,
            lambda job, canvas: _finish(job, canvas, gts.get(job.scene), out_dir, cut),
        )
    finally:
        bar(0, None)
    seconds = time.perf_counter() - start
    n = sum(len(j.records) for j in jobs)
    return PredictResult(written, n, predictor.evaluated, seconds, predictor.setup.describe())


def default_workers(cuda: bool = True) -> int:
    """Patch-reading threads. On an H100 host one thread decoded ≥190 patches/s (4 PackBits
    bands each) and the model alone ran 2,400/s, so one thread is far too few; 8 leave cores for
    the GeoTIFF writers and the thread that drives the device. On the CPU the model needs the
    cores: a quarter of them read (2 cores: one reader ran 28 patches/s, two 27).
    """
    cores = os.cpu_count() or 1
    return min(8, cores) if cuda else max(1, cores // 4)


def _job(scene: str, records: list, overlap: int) -> SceneJob:
    rows, cols = grid_size((r.id.row, r.id.col) for r in records)
    check_complete(scene, [(r.id.row, r.id.col) for r in records], rows, cols)
    spots = window_spots((rows * PATCH, cols * PATCH), PATCH, overlap)
    return SceneJob(scene, records, rows, cols, spots, overlap=overlap)


def _run(
    jobs: list[SceneJob],
    predictor: WindowPredictor,
    batch_size: int,
    workers: int,
    bar: Callable[[int, str | None], None],
    finish: Callable[[SceneJob, BlendCanvas], ScenePrediction],
) -> tuple[ScenePrediction, ...]:
    """Three stages overlap: reader threads fill batches ahead; the device runs batch i while
    the CPU adds batch i-1 into its scene's canvas (on the CPU, one batch per core at once:
    `model_threads`); a finished scene is cropped, encoded and written in the background while
    the next scene is predicted. Batches and the order in which windows are blended are exactly
    those of `predict_mosaic`, so the output is identical.
    """
    canvases: dict[str, BlendCanvas] = {}
    added: dict[str, int] = {}
    futures: list[Future[ScenePrediction]] = []
    writer = Background("cloudseg-write", threads=2)  # scenes written side by side

    def collect(job: SceneJob, spots: list[tuple[int, int]], pending: Future[Pending]) -> None:
        if job.scene not in canvases:  # (not setdefault: that would allocate one per batch)
            canvases[job.scene] = BlendCanvas(job.padded, job.window, job.overlap)
        canvas = canvases[job.scene]
        for (y, x), p in zip(spots, pending.result().result(), strict=True):
            canvas.add(y, x, p)
        added[job.scene] = added.get(job.scene, 0) + len(spots)
        if added[job.scene] == len(job.spots):  # its last batch: nodata is complete too
            futures.append(writer.submit(finish, job, canvases.pop(job.scene)))
            bar(len(job.records), job.scene)

    batches = prefetch_batches(jobs, batch_size, predictor.host_batch, workers)
    with writer, closing(batches), model_threads(predictor.setup.is_cuda) as run:
        queued: deque = deque()
        for job, spots, batch in batches:
            queued.append((job, spots, run(predictor.start, batch)))
            if len(queued) > run.ahead:
                collect(*queued.popleft())
        while queued:
            collect(*queued.popleft())
    predictor.setup.synchronize()
    return tuple(f.result() for f in futures)


def _finish(
    job: SceneJob, canvas: BlendCanvas, gt: Path | None, out_dir: Path, cut: float
) -> ScenePrediction:
    """Blend, crop the scene out of its centred grid, write probability and mask GeoTIFFs.

    The network's output is kept on no-data pixels (the official protocol scores them); the
    footprint goes into each file's mask band instead.
    """
    grid = (
        SceneGrid.fitted(_shape_of(gt), job.rows, job.cols, job.scene)
        if gt is not None
        else SceneGrid.uncropped(job.rows, job.cols)
    )
    if job.nodata is None:  # allocated with the scene's first batch, released here
        raise RuntimeError(f"scene {job.scene}: finished twice or before it was read")
    prob = grid.crop(canvas.result())
    footprint = ~grid.crop(job.nodata)
    job.nodata = None  # jobs live until the end of the run; their masks need not
    ref = _georef(gt, job.records[0], grid)
    mask, prob = to_uint8_mask(prob, cut), to_uint8_probability(prob)
    with ThreadPoolExecutor(1, thread_name_prefix="cloudseg-mask") as side:  # deflate both at once
        mask_file = out_dir / f"{job.scene}{MASK_SUFFIX}"
        pending = side.submit(write_uint8, mask_file, mask, ref, footprint, mask_product(cut))
        prob_path = write_uint8(out_dir / f"{job.scene}{PROB_SUFFIX}", prob, ref, footprint,
                                probability_product())
        mask_path = pending.result()
    shape = (grid.height, grid.width)
    return ScenePrediction(job.scene, shape, len(job.records), prob_path, mask_path, ref.present)


def predict_scenes(
    bundle_dir: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    split: str = "test",
    *,
    tta: bool = False,
    overlap: int = 0,
    batch_size: int | None = None,
    device: str = "auto",
    threshold: float | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> PredictResult:
    """Predict every scene of `split` under `data_root` with the bundle's model and write
    `<scene>_prob.tif` / `<scene>_mask.tif` into `out_dir` (see the module docstring).
    """
    from cloudseg.training.checkpoint import load_bundle

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
        workers=workers,
    )


def _shape_of(path: Path) -> tuple[int, int]:
    with open_raster(path) as src:
        return src.height, src.width


def _georef(gt: Path | None, first: PatchRecord, grid: SceneGrid) -> Georef:
    """Prefer the scene-level gt's georeference; else derive it from a georeferenced patch."""
    if gt is not None and (ref := read_georef(gt)).present:
        return ref
    return scene_georef_from_patch(
        next(iter(first.files.values())), first.id.row, first.id.col, grid
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

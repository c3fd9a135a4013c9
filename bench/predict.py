"""Whole-scene prediction throughput: patches/s of `cloudseg.predict_scenes` (batched,
AMP + channels_last on CUDA) against a naive loop that runs one patch at a time in fp32 on the
same device, in the same run, over the same synthetic test scenes. Both read the same TIFFs and
write the same GeoTIFFs, so the ratio is what batching, AMP and overlapped I/O buy end to end:
`predict` reads patches on `--workers` threads ahead of the model and writes GeoTIFFs in the
background; the naive loop reads, predicts and writes serially on one thread. A third line runs
`predict` with one reader thread, to show what the parallel reading alone is worth.

    python bench/predict.py --model vanilla-unet --base-width 8 --scenes 2 --scene-size 1600
    python bench/predict.py --model unet-resnet34 --scenes 3 --scene-size 4000 --batch 64  # GPU
    python bench/predict.py --memory  # peak memory of one full 38-Cloud scene (7,600 x 7,700)

`--memory` runs `predict` once on one scene of `--memory-size` (default a full 38-Cloud scene,
drawn coarse: the pixels do not matter) and prints its peak resident memory above the process
before it (sampled every 2 ms; the bands, one float32 canvas, the no-data mask and the outputs)
and the peak of numpy's own allocations (tracemalloc).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from cloudseg.config import ModelConfig, RunConfig, TrainConfig
from cloudseg.data import BANDS, find_layout, index_dataset, read_band, write_synthetic
from cloudseg.models import MODELS, build_model
from cloudseg.normalisation import normalise
from cloudseg.scenes.geotiff import open_raster, to_uint8_probability, write_uint8
from cloudseg.scenes.inference import default_batch_size
from cloudseg.scenes.predict import default_workers, predict_scenes
from cloudseg.scenes.stitch import PATCH, crop, grid_size
from cloudseg.training.checkpoint import load_bundle, save_bundle


def model_config(spec: str, base_width: int) -> ModelConfig:
    """A registry name (`vanilla-unet`) or `<architecture>-<encoder>` (`unet-resnet34`)."""
    if spec in MODELS:
        return ModelConfig(
            name=spec, base_width=None if MODELS.get(spec).uses_encoder else base_width
        )
    name, _, encoder = spec.partition("-")
    return ModelConfig(name=name, encoder=encoder or "resnet34")


def naive(bundle: Path, root: Path, out: Path, device: str) -> tuple[int, float]:
    """One patch per forward pass, fp32, no AMP: the loop one writes first."""
    model, config = load_bundle(bundle, device=device)
    gts = find_layout(root).scene_gts
    by_scene = defaultdict(list)
    for rec in index_dataset(root, split="test"):
        by_scene[rec.id.scene].append(rec)
    start = time.perf_counter()
    n = 0
    for scene, records in sorted(by_scene.items()):
        rows, cols = grid_size((r.id.row, r.id.col) for r in records)
        canvas = np.zeros((rows * PATCH, cols * PATCH), np.float32)
        for rec in records:
            image = np.stack([read_band(rec.files[b]) for b in BANDS])[None]
            x = normalise(torch.from_numpy(image).to(device), config.train)
            with torch.inference_mode():
                p = torch.sigmoid(model(x))[0, 0].cpu().numpy()
            r0, c0 = (rec.id.row - 1) * PATCH, (rec.id.col - 1) * PATCH
            canvas[r0 : r0 + PATCH, c0 : c0 + PATCH] = p
            n += 1
        prob = crop(canvas, scene_shape(gts[scene]))
        write_uint8(out / f"{scene}_prob.tif", to_uint8_probability(prob))
        write_uint8(
            out / f"{scene}_mask.tif",
            np.where(prob > config.train.threshold, 255, 0).astype(np.uint8),
        )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n, time.perf_counter() - start


def model_only(bundle: Path, device: str, batch: int, n: int) -> float:
    """patches/s of the batched model on in-memory windows: the ceiling, with no file I/O."""
    from cloudseg.scenes.inference import WindowPredictor

    model, config = load_bundle(bundle, device="cpu")
    predictor = WindowPredictor(model, config.train, device, batch_size=batch)
    x = predictor.host_batch((batch, 4, PATCH, PATCH))
    x.copy_(torch.randint(0, 30000, x.shape, dtype=torch.int32).to(torch.uint16))
    predictor.start(x).result()  # warm-up
    steps = max(1, n // batch)
    start = time.perf_counter()
    pending = [predictor.start(x) for _ in range(steps)]
    for p in pending:
        p.result()
    return steps * batch / (time.perf_counter() - start)


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(args: argparse.Namespace, device: str) -> None:
    """Peak memory of one `predict` on one scene of `args.memory_size`."""
    h, w = args.memory_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_synthetic(tmp / "data", train_scenes=1, test_scenes=1, scene_size=(h, w),
                               coarse=8, workers=2)
        config = RunConfig(model=model_config(args.model, args.base_width),
                           train=TrainConfig(device=device))
        bundle = save_bundle(tmp / "bundle", build_model(config.model), config)
        run = dict(device=device, batch_size=args.batch or default_batch_size(device))
        base = rss_bytes()
        peak, done = [base], threading.Event()

        def sample() -> None:
            while not done.wait(0.002):
                peak[0] = max(peak[0], rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        tracemalloc.start()
        sampler.start()
        try:
            result = predict_scenes(bundle, root, tmp / "out", workers=args.workers, **run)
        finally:
            done.set()
            sampler.join()
        _, numpy_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    mib = 2**20
    print(f"device: {result.device}  model: {args.model}  scene: {h} x {w} px  "
          f"patches: {result.patches}  {result.seconds:.1f} s")
    print(f"predict peak memory: {(peak[0] - base) / 1e9:.2f} GB above the process before it "
          f"({(peak[0] - base) / mib:.0f} MiB; process peak {peak[0] / mib:.0f} MiB); "
          f"numpy allocations peak {numpy_peak / mib:.0f} MiB")


def scene_shape(path: Path) -> tuple[int, int]:
    with open_raster(path) as src:
        return src.height, src.width


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vanilla-unet")
    ap.add_argument("--base-width", type=int, default=8, help="from-scratch models only")
    ap.add_argument("--scenes", type=int, default=1)
    ap.add_argument("--scene-size", type=int, default=800)
    ap.add_argument("--batch", type=int, default=None,
                    help="predict's batch size (default: the device's, 16 CUDA / 1 CPU)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument(
        "--workers", type=int, default=None,
        help="patch-reading threads of predict (default: the device's, see default_workers)"
    )
    ap.add_argument("--memory", action="store_true",
                    help="print predict's peak memory on one scene of --memory-size instead")
    ap.add_argument("--memory-size", type=int, nargs=2, default=(7600, 7700),
                    metavar=("H", "W"), help="the scene of --memory (default a full 38-Cloud one)")
    args = ap.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    batch = args.batch or default_batch_size(device)
    args.workers = args.workers or default_workers(device == "cuda")
    if args.memory:
        memory(args, device)
        return
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = (args.scene_size, args.scene_size)
        root = write_synthetic(
            tmp / "data", train_scenes=1, test_scenes=args.scenes, scene_size=size
        )
        config = RunConfig(
            model=model_config(args.model, args.base_width), train=TrainConfig(device=device)
        )
        bundle = save_bundle(tmp / "bundle", build_model(config.model), config)
        run = dict(device=device, batch_size=batch)
        # warm-up (kernel selection, allocators, page cache) outside every timing
        predict_scenes(bundle, root, tmp / "warm", workers=args.workers, **run)
        result = predict_scenes(bundle, root, tmp / "fast", workers=args.workers, **run)
        one = predict_scenes(bundle, root, tmp / "one", workers=1, **run)
        n, naive_s = naive(bundle, root, tmp / "naive", device)
        model_rate = model_only(bundle, device, batch, result.patches)
        same = all(
            np.array_equal(read_band(path), read_band(tmp / "one" / path.name))
            for path in sorted((tmp / "fast").glob("*.tif"))
        )
    naive_rate = n / naive_s
    print(
        f"device: {result.device}  model: {args.model}  scenes: {args.scenes} x "
        f"{args.scene_size}^2 px  patches: {result.patches}"
    )
    print(
        f"predict (batch {batch}, {args.workers} readers): {result.patches_per_s:8.2f} "
        f"patches/s ({result.seconds:.2f} s)"
    )
    print(
        f"predict (batch {batch}, 1 reader):  {one.patches_per_s:8.2f} patches/s "
        f"({one.seconds:.2f} s)"
    )
    print(f"naive (1 patch, fp32, serial I/O): {naive_rate:8.2f} patches/s ({naive_s:.2f} s)")
    print(f"model only (in-memory batches of {batch}): {model_rate:8.2f} patches/s")
    print(f"ratio predict/naive: {result.patches_per_s / naive_rate:.2f}x")
    print(f"outputs with {args.workers} readers and 1 reader identical: {same}")


if __name__ == "__main__":
    main()

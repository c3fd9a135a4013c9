"""Loader throughput on >= 500 full-size synthetic patches, in one run, against two baselines.

  (a) naive: a Dataset that opens the five TIFFs of each sample with rasterio (the write-up's
      loader), through the same DataLoader settings;
  (b) cached: cloudseg.data.PatchDataset over the packed memmap cache through its batched
      DataLoader (`PatchDataset.loader`; the default-collate DataLoader is printed too);
  (c) memcpy: a plain copy of the same bytes (images + masks) out of the cache.

Prints patches/s and the ratios (b)/(a) (target >= 20x) and (b)/(c) (target >= 50%), and (b)
against 2,000 patches/s. (d) is a trial's training loader as the shipped studies make it
(augmented, `--crop`, batch 16) with `--workers` loader workers against none, pinned too when
CUDA is there: the line that decides the studies' `train.num_workers`.
Usage: python bench/loader.py [--data DIR] [--patches N] [--workers W] [--crop C]
The data and cache are written under /tmp/cloudseg-bench unless --data is given; rerunning reuses
them. Full 384x384 patches, no crop, no augmentation: the bytes every epoch has to move.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cloudseg.data import BANDS, GT, PatchDataset, open_cache, read_band, write_synthetic
from cloudseg.data.layout import PATCH_SIZE


class NaiveTiffDataset(Dataset):
    """Baseline (a): five rasterio opens and decodes per sample, every epoch."""

    def __init__(self, records):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        files = self.records[i].files
        image = np.stack([read_band(files[b]) for b in BANDS])
        mask = (read_band(files[GT]) // 255)[None]
        return torch.from_numpy(image), torch.from_numpy(mask)


def rate(loader: DataLoader, limit: int) -> float:
    """Patches per second over one pass (stops after `limit` patches)."""
    seen, start = 0, time.perf_counter()
    for images, _ in loader:
        seen += images.shape[0]
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


def memcpy_rate(cache, batch: int, repeats: int = 3) -> float:
    """Baseline (c): copy the same bytes in batches into a preallocated buffer (best of N)."""
    n = len(cache)
    images = np.empty((batch, len(BANDS), PATCH_SIZE, PATCH_SIZE), np.uint16)
    masks = np.empty((batch, PATCH_SIZE, PATCH_SIZE), np.uint8)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for lo in range(0, n - batch + 1, batch):
            np.copyto(images, cache.images[lo:lo + batch])
            np.copyto(masks, cache.masks[lo:lo + batch])
        best = max(best, (n // batch) * batch / (time.perf_counter() - start))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/cloudseg-bench/data"))
    p.add_argument("--patches", type=int, default=500)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--naive-limit", type=int, default=256, help="patches timed for (a)")
    p.add_argument("--crop", type=int, default=256, help="(d)'s crop (model-search's; 0: none)")
    p.add_argument("--limit", type=int, default=None,
                   help="patches timed per pass (default: the whole cache)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per loader (best of)")
    args = p.parse_args()
    torch.set_num_threads(1)

    side = 5  # 1920 x 1920 scenes -> 5 x 5 patches each
    if not args.data.exists():
        scenes = math.ceil(args.patches / side**2)
        start = time.perf_counter()
        write_synthetic(args.data, train_scenes=scenes, test_scenes=0,
                        scene_size=(side * PATCH_SIZE, side * PATCH_SIZE), seed=0)
        print(f"synthetic data: {scenes} scenes in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    cache = open_cache(args.data, args.data.parent / "cache", progress=True)
    print(f"cache: {len(cache)} patches ready in {time.perf_counter() - start:.1f} s "
          f"({cache.path})")
    if len(cache) < args.patches:
        raise SystemExit(f"{args.data} holds {len(cache)} patches, fewer than {args.patches}")

    kw = {"batch_size": args.batch, "num_workers": args.workers, "shuffle": True,
          "persistent_workers": False}
    print(f"{len(cache)} patches of 4x384x384 uint16 + mask, batch {args.batch}, "
          f"{args.workers} workers, {os.cpu_count()} CPUs")
    naive = rate(DataLoader(NaiveTiffDataset(cache.records), **kw), args.naive_limit)
    ds = PatchDataset(cache)

    limit = min(args.limit or len(cache), len(cache))

    def best_of(make) -> float:
        rate(make(), limit)  # warm: page cache, memmap faults, worker start-up path
        return max(rate(make(), limit) for _ in range(args.repeats))

    loader_kw = {"shuffle": True, "num_workers": args.workers}
    batched_w = best_of(lambda: ds.loader(args.batch, **loader_kw))
    batched_0 = best_of(lambda: ds.loader(args.batch, **(loader_kw | {"num_workers": 0})))
    collate_0 = best_of(lambda: DataLoader(ds, **(kw | {"num_workers": 0})))
    copy = memcpy_rate(cache, args.batch)

    trial = PatchDataset(cache, crop=args.crop or None, augment=True, random_crop=True, seed=0)
    pins = (False, True) if torch.cuda.is_available() else (False,)
    trial_rates = {(w, pin): best_of(lambda w=w, pin=pin: trial.loader(
        16, shuffle=True, drop_last=True, num_workers=w, pin_memory=pin))
        for w in (args.workers, 0) for pin in pins}

    best = max(batched_w, batched_0)
    gib = cache.images[0].nbytes / 2**30
    print(f"(a) naive rasterio, 5 TIFFs/sample        : {naive:8.0f} patches/s")
    print(f"(b) PatchDataset.loader, {args.workers} workers        : {batched_w:8.0f} patches/s")
    print(f"(b) PatchDataset.loader, 0 workers        : {batched_0:8.0f} patches/s")
    print(f"    PatchDataset + default collate, 0 wkr : {collate_0:8.0f} patches/s (reference)")
    print(f"(c) memcpy of the same bytes              : {copy:8.0f} patches/s")
    for (w, pin), r in trial_rates.items():
        label = f"{w} workers{', pinned' if pin else ''}"
        print(f"(d) trial loader (augment, crop {args.crop or 384}, batch 16), {label:<18}: "
              f"{r:8.0f} patches/s")
    print(f"(b)/(a) = {best / naive:.1f}x   (target >= 20x)")
    print(f"(b)/(c) = {best / copy:.0%}    (target >= 50%)")
    print(f"(b) = {best:.0f} patches/s = {best * gib:.2f} GiB/s (target >= 2,000 patches/s)")
    faster = max(trial_rates, key=trial_rates.__getitem__)
    print(f"faster trial loader: {faster[0]} workers "
          f"({trial_rates[(0, False)] / trial_rates[(args.workers, False)]:.1f}x of "
          f"{args.workers} workers with none)")

if __name__ == "__main__":
    main()

"""Per-patch pixel sums, computed once per packed cache and kept beside it, so a run's class
balance and band mean/std over any subset of patches cost a sum over rows, not a pass over
its pixels (on 38-Cloud a half subset is 2.5·10⁹ values: seconds of every trial's start).

The figures are those of `compute_stats` (valid pixels only: not all four bands 0), from exact
integer sums (std's variance is exact until its one division).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.data.cache import PatchCache
from cloudseg.data.layout import BANDS

FILENAME = "moments.npz"


@dataclass(frozen=True)
class SubsetMoments:
    """Class balance and band mean/std of a set of patches (what a run's config needs)."""

    background_pixels: int
    cloud_pixels: int
    band_mean: tuple[float, ...]  # R G B NIR, DN over valid pixels (nan without any)
    band_std: tuple[float, ...]

    @property
    def pos_weight(self) -> float:
        """Background / cloud over valid pixels (inf without cloud)."""
        return self.background_pixels / self.cloud_pixels if self.cloud_pixels else math.inf


def patch_sums(cache: PatchCache) -> dict[str, np.ndarray]:
    """Per row: `valid` and `cloud` pixel counts, band `sum` and `square` sums (int64), read
    from beside the cache, or computed once and kept there.
    """
    path = Path(cache.path) / FILENAME
    if path.is_file():
        with np.load(path) as stored:
            sums = {k: stored[k] for k in stored.files}
        if len(sums["valid"]) == len(cache):
            return sums
    sums = _compute(cache)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, valid=sums["valid"], cloud=sums["cloud"], sum=sums["sum"],
                 square=sums["square"])
        os.replace(tmp, path)  # another process computing the same sums writes the same file
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache: recomputed next time, same result
    return sums


def _compute(cache: PatchCache) -> dict[str, np.ndarray]:
    n = len(cache)
    valid, cloud = np.zeros(n, np.int64), np.zeros(n, np.int64)
    band_sum, band_square = np.zeros((n, len(BANDS)), np.int64), np.zeros((n, len(BANDS)), np.int64)
    for row in range(n):
        image, mask = cache.images[row], cache.masks[row]
        keep = image.any(axis=0)
        pixels = image[:, keep].astype(np.int64)  # (4, valid pixels)
        valid[row] = pixels.shape[1]
        cloud[row] = int(np.count_nonzero(mask[keep]))
        band_sum[row] = pixels.sum(axis=1)
        band_square[row] = (pixels * pixels).sum(axis=1)  # ≤ 147,456 · 65,535²: fits int64
    return {"valid": valid, "cloud": cloud, "sum": band_sum, "square": band_square}


def subset_moments(cache: PatchCache, rows: Sequence[int] | np.ndarray) -> SubsetMoments:
    """Class balance and band mean/std over the cache rows `rows`."""
    sums = patch_sums(cache)
    idx = np.asarray(rows, dtype=np.int64)
    n = int(sums["valid"][idx].sum())
    cloud = int(sums["cloud"][idx].sum())
    # Python ints: a 95-Cloud-sized subset's sum of squares can pass int64's range
    total = [sum(int(v) for v in sums["sum"][idx, b]) for b in range(len(BANDS))]
    square = [sum(int(v) for v in sums["square"][idx, b]) for b in range(len(BANDS))]
    mean = tuple(t / n if n else math.nan for t in total)
    std = tuple(math.sqrt((q * n - t * t) / (n * n)) if n else math.nan  # exact until the /
                for t, q in zip(total, square, strict=True))
    return SubsetMoments(background_pixels=n - cloud, cloud_pixels=cloud, band_mean=mean,
                         band_std=std)

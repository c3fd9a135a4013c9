"""Per-patch pixel sums, computed once per packed cache and kept beside it, so a run's class
balance and band mean/std over any subset of patches cost a sum over rows, not a pass over
its pixels (on 38-Cloud a half subset is 2.5·10⁹ values: seconds of every trial's start).

`cloudseg prepare` computes them while it packs (each patch's sums from the pixels just
decoded, on the packing threads: `PatchSums.add`), so the first sweep after a prepare starts as
fast as later ones; a cache packed before that gets them once, in parallel, when first opened.

The figures are those of `compute_stats` (valid pixels only: not all four bands 0), from exact
integer sums (std's variance is exact until its one division).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cloudseg.data.layout import BANDS
from cloudseg.data.progress import parallel_map

if TYPE_CHECKING:
    from cloudseg.data.cache import PatchCache

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


class PatchSums:
    """Per-row sums of `n` patches, filled row by row (from any thread), saved as one file."""

    def __init__(self, n: int) -> None:
        self.valid, self.cloud = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.sum = np.zeros((n, len(BANDS)), np.int64)
        self.square = np.zeros((n, len(BANDS)), np.int64)

    def add(self, row: int, image: np.ndarray, mask: np.ndarray) -> None:
        """Row `row`'s sums from its (4, S, S) uint16 image and (S, S) {0, 1} mask."""
        keep = image.any(axis=0)  # valid: not all four bands 0
        self.valid[row] = np.count_nonzero(keep)
        self.cloud[row] = np.count_nonzero(np.logical_and(mask, keep))
        flat = image.reshape(len(BANDS), -1)
        # No-data pixels are 0 in every band: summing all pixels sums the valid ones, with no
        # gather. Squares in float64 are exact: each ≤ 65,535² and a patch's total < 2⁵³.
        self.sum[row] = flat.sum(axis=1, dtype=np.int64)
        wide = flat.astype(np.float64)
        self.square[row] = np.einsum("ij,ij->i", wide, wide)

    def arrays(self) -> dict[str, np.ndarray]:
        """The sums by name, as stored."""
        return {"valid": self.valid, "cloud": self.cloud, "sum": self.sum,
                "square": self.square}

    def save(self, folder: Path) -> Path:
        """Write `folder/moments.npz` atomically (another process writing the same sums writes
        the same file); returns its path.
        """
        path = Path(folder) / FILENAME
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, valid=self.valid, cloud=self.cloud, sum=self.sum, square=self.square)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def has_sums(cache: PatchCache) -> bool:
    """Whether the cache's per-patch sums are on disk (a stat: no read)."""
    return (Path(cache.path) / FILENAME).is_file()


def patch_sums(cache: PatchCache, progress: bool = False) -> dict[str, np.ndarray]:
    """Per row: `valid` and `cloud` pixel counts, band `sum` and `square` sums (int64), read
    from beside the cache, or computed once (in parallel) and kept there.
    """
    path = Path(cache.path) / FILENAME
    if path.is_file():
        with np.load(path) as stored:
            sums = {k: stored[k] for k in stored.files}
        if len(sums["valid"]) == len(cache):
            return sums
    computed = compute_sums(cache, progress)
    with contextlib.suppress(OSError):  # a read-only cache: recomputed next time, same result
        computed.save(cache.path)
    return computed.arrays()


def compute_sums(cache: PatchCache, progress: bool = False) -> PatchSums:
    """Every row's sums from the cache's pixels, on the file threads."""
    n = len(cache)
    sums = PatchSums(n)

    def one(row: int) -> None:
        sums.add(row, np.asarray(cache.images[row]), np.asarray(cache.masks[row]))

    for _ in parallel_map(one, range(n), n, "patch moments", progress):
        pass
    return sums


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

"""Per-patch pixel sums, computed once per packed cache and kept beside it, so a run's class
balance and band mean/std over any subset of patches cost a sum over rows, not a pass over
its pixels (on 38-Cloud a half subset is 2.5·10⁹ values: seconds of every trial's start).

`cloudseg prepare` computes them while it packs (cloudseg.data.sums), so the first sweep after
a prepare starts as fast as later ones; a cache packed before that gets them once, in
parallel, when first opened.

The figures are those of `compute_stats` (valid pixels only: not all four bands 0), from exact
integer sums (std's variance is exact until its one division).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cloudseg.data.layout import BANDS
from cloudseg.data.sums import FILENAME, ensure_sums

if TYPE_CHECKING:
    from cloudseg.data.cache import PatchCache

__all__ = ["FILENAME", "SubsetMoments", "patch_sums", "subset_moments"]


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


def patch_sums(cache: PatchCache, progress: bool = False) -> dict[str, np.ndarray]:
    """Per row: `valid` and `cloud` pixel counts, band `sum` and `square` sums (int64), read
    from beside the cache, or computed once (in parallel) and kept there.
    """
    return ensure_sums(cache.path, cache.images, cache.masks, progress)


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

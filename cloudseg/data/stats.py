"""Class balance (-> pos_weight), per-band statistics and per-band cloud/clear separability.

Everything comes from exact per-band histograms (65,536 DN x {clear, cloud}) over the valid
pixels (not all four bands 0), so the mean, std and ROC AUC are exact, not sampled, and cost one
`bincount` per band and patch. The AUC is the rank statistic P(cloud DN > clear DN) + P(=)/2: the
write-up's "importance of channels" as a number (0.5 = useless band, 1 = perfect threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.data.cache import PatchCache
from cloudseg.data.layout import BANDS

_DN = 65536


@dataclass(frozen=True)
class DataStats:
    """Class balance and per-band statistics of a set of patches (`compute_stats`)."""

    n_patches: int
    background_pixels: int  # valid, clear
    cloud_pixels: int  # valid, cloud
    nodata_pixels: int  # all four bands 0 (zero-padded margins); excluded from everything
    pos_weight: float  # background / cloud over valid pixels (inf without cloud)
    band_mean: tuple[float, float, float, float]  # DN over valid pixels, R G B NIR
    band_std: tuple[float, float, float, float]
    band_auc: tuple[float, float, float, float]  # cloud vs clear ROC AUC per band
    histograms: np.ndarray = field(repr=False, compare=False)  # (4, 65536, 2) int64

    @property
    def pos_weight_all_pixels(self) -> float:
        """Background incl. no-data / cloud: how the write-up counted (2.3053 on 38-Cloud)."""
        bg = self.background_pixels + self.nodata_pixels
        return bg / self.cloud_pixels if self.cloud_pixels else math.inf

    def as_dict(self) -> dict[str, Any]:
        """The statistics as JSON (non-finite values as null), per band by name."""
        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "n_patches": self.n_patches,
            "background_pixels": self.background_pixels,
            "cloud_pixels": self.cloud_pixels,
            "nodata_pixels": self.nodata_pixels,
            "cloud_fraction": self.cloud_pixels / max(1, self.cloud_pixels
                                                      + self.background_pixels),
            "pos_weight": finite(self.pos_weight),
            "pos_weight_all_pixels": finite(self.pos_weight_all_pixels),
            "bands": {b: {"mean": finite(m), "std": finite(s), "auc": finite(a)}
                      for b, m, s, a in zip(BANDS, self.band_mean, self.band_std,
                                            self.band_auc, strict=True)},
        }


def compute_stats(
    cache: PatchCache, indices: Sequence[int] | np.ndarray | None = None
) -> DataStats:
    """Statistics over the cache rows `indices` (all rows when None)."""
    rows = np.arange(len(cache)) if indices is None else np.asarray(indices, dtype=np.int64)
    hist: np.ndarray = np.zeros((len(BANDS), _DN * 2), np.int64)
    nodata = 0
    for row in rows:
        image, mask = cache.images[row], cache.masks[row]
        valid = image.any(axis=0)
        nodata += int(valid.size - np.count_nonzero(valid))
        cloud = mask[valid].astype(np.int64)
        for b in range(len(BANDS)):
            hist[b] += np.bincount(image[b][valid].astype(np.int64) * 2 + cloud,
                                   minlength=_DN * 2)
    hist = hist.reshape(len(BANDS), _DN, 2)
    clear_n, cloud_n = int(hist[0, :, 0].sum()), int(hist[0, :, 1].sum())
    means, stds, aucs = [], [], []
    dn = np.arange(_DN, dtype=np.float64)
    for b in range(len(BANDS)):
        both = hist[b].sum(axis=1).astype(np.float64)
        n = both.sum()
        mean = float((both * dn).sum() / n) if n else math.nan
        means.append(mean)
        stds.append(float(math.sqrt((both * (dn - mean) ** 2).sum() / n)) if n else math.nan)
        aucs.append(_auc(hist[b, :, 1], hist[b, :, 0]))
    return DataStats(
        n_patches=int(rows.size), background_pixels=clear_n, cloud_pixels=cloud_n,
        nodata_pixels=nodata, pos_weight=clear_n / cloud_n if cloud_n else math.inf,
        band_mean=_per_band(means), band_std=_per_band(stds), band_auc=_per_band(aucs),
        histograms=hist,
    )


def _per_band(values: list[float]) -> tuple[float, float, float, float]:
    red, green, blue, nir = values  # BANDS order
    return red, green, blue, nir


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney AUC from two histograms over the same bins (ties count one half)."""
    n_pos, n_neg = float(positive.sum()), float(negative.sum())
    if not n_pos or not n_neg:
        return math.nan
    below = np.cumsum(negative) - negative  # negatives strictly below each bin
    wins = (positive.astype(np.float64) * (below + 0.5 * negative)).sum()
    return float(wins / (n_pos * n_neg))


def plot_stats(stats: DataStats, out_dir: str | Path) -> list[Path]:
    """class_balance.png and band_distributions.png (cloud vs clear per band) in `out_dir`."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in workers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    counts = [stats.background_pixels, stats.cloud_pixels, stats.nodata_pixels]
    ax.bar(["clear", "cloud", "no-data"], counts, color=["tab:green", "tab:gray", "black"])
    ax.set_ylabel("pixels")
    ax.set_title(f"class balance: pos_weight = {stats.pos_weight:.4g}")
    balance = out_dir / "class_balance.png"
    fig.savefig(balance, dpi=100)

    fig = Figure(figsize=(9, 6), layout="constrained")
    coarse = stats.histograms.reshape(len(BANDS), 256, 256, 2).sum(axis=2)  # 256-DN bins
    centres = np.arange(256) * 256 + 128
    for b, band in enumerate(BANDS):
        ax = fig.add_subplot(2, 2, b + 1)
        for k, (label, colour) in enumerate((("clear", "tab:green"), ("cloud", "tab:gray"))):
            h = coarse[b, :, k].astype(float)
            if h.sum():
                ax.plot(centres, h / h.sum(), label=label, color=colour)
        total = coarse[b].sum(axis=1).cumsum()
        if total[-1]:
            lo, hi = np.searchsorted(total, [0.001 * total[-1], 0.999 * total[-1]])
            ax.set_xlim(centres[lo] - 256, centres[min(hi, 255)] + 256)
        ax.set_title(f"{band}: AUC {stats.band_auc[b]:.3f}")
        ax.set_xlabel("DN")
        ax.legend()
    bands = out_dir / "band_distributions.png"
    fig.savefig(bands, dpi=100)
    return [balance, bands]

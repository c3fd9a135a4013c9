"""The report's figures as PNG bytes: per-scene Jaccard bars (ours beside Cloud-Net where the
scene ids match) and the worst scenes as overlays (TP white, FP red, FN blue, TN black).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sweep.final.scoring import FitScore

OVERLAY_SIDE = 360  # px: the longer side of an overlay thumbnail


def _png(fig: object) -> bytes:
    from sweep.artifacts import pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # type: ignore[attr-defined]
    pyplot().close(fig)
    return buf.getvalue()


def jaccard_bars(score: FitScore) -> bytes:
    """Per-scene Jaccard at 12/255 (percent), ours beside Cloud-Net's for the shared scenes."""
    from sweep.artifacts import pyplot

    plt = pyplot()
    scenes = [s.scene for s in score.official.scenes]
    ours = [100 * s.metrics.iou for s in score.official.scenes]
    ref = score.cloudnet
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(scenes) + 2), 4.2))
    x = np.arange(len(scenes))
    width = 0.4 if ref is not None else 0.7
    ax.bar(x - (width / 2 if ref is not None else 0), ours, width, label="ours", color="#1f77b4")
    if ref is not None:
        theirs = [100 * ref.reference.scenes[s]["iou"] if s in ref.reference.scenes else 0.0
                  for s in scenes]
        ax.bar(x + width / 2, theirs, width, label="Cloud-Net (published)", color="#ff7f0e")
    ax.set_xticks(x, [s.replace("LC08_L1TP_", "")[:15] for s in scenes], rotation=70,
                  fontsize=7)
    ax.set_ylabel("Jaccard (%) at 12/255")
    ax.set_ylim(0, 100)
    ax.set_title(f"per-scene Jaccard on the test split, final fit of trial {score.origin}")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _read(path: Path) -> np.ndarray:
    from cloudseg import open_raster

    with open_raster(path) as src:
        step = max(1, max(src.height, src.width) // OVERLAY_SIDE)
        return src.read(1)[::step, ::step]


def overlay(prob_tif: Path, gt_tif: Path, threshold: float, title: str) -> bytes:
    """One scene's prediction against its ground truth at `threshold` (downsampled)."""
    from cloudseg import binarise
    from sweep.artifacts import pyplot

    cloud, truth = binarise(_read(prob_tif), threshold), _read(gt_tif) > 0
    rgb = np.zeros((*cloud.shape, 3), np.uint8)
    rgb[cloud & truth] = (255, 255, 255)
    rgb[cloud & ~truth] = (220, 40, 40)
    rgb[~cloud & truth] = (40, 90, 230)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.4))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return _png(fig)

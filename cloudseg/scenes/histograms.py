"""Any threshold for free: per-scene histograms of the predicted cloud probability.

A validation pass that keeps, for each scene, how many cloud pixels and how many clear pixels
fell into each probability bin knows the exact confusion counts at every bin edge, without
keeping a pixel. With BINS = 510 the edges k/510 include 0.5 (k = 255) and the official 38-Cloud
threshold 12/255 (k = 24), so a trial reports its metric at 0.5, at 12/255 and at the best
threshold on the validation scenes from one pass.

Exactness: a pixel of probability p goes to bin b = ceil(BINS·p) − 1 (0 for p = 0), computed in
float64 where BINS·p of a float32 p is exact. Then `p > k/BINS` ⇔ `b >= k` for every k >= 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, overload

import numpy as np

from cloudseg.metrics import Mask, Metrics
from cloudseg.scenes.evaluate import mean_over_scenes

BINS = 510
OFFICIAL_EDGE = 24  # 24/510 = 12/255


if TYPE_CHECKING:
    import torch


@overload
def bin_index(probs: torch.Tensor, bins: int = BINS) -> torch.Tensor: ...
@overload
def bin_index(probs: np.ndarray, bins: int = BINS) -> np.ndarray: ...
def bin_index(probs: Mask, bins: int = BINS) -> Mask:
    """Bin of each probability (numpy or torch, any device): ceil(bins·p) − 1, clamped."""
    if hasattr(probs, "detach"):
        tensor = cast("torch.Tensor", probs)
        return (tensor.double() * bins).ceil().long().sub(1).clamp(0, bins - 1)
    scaled = np.ceil(np.asarray(probs, np.float64) * bins).astype(np.int64) - 1
    return np.clip(scaled, 0, bins - 1)


class ThresholdHistograms:
    """Per-scene (clear, cloud) × BINS counts over a validation pass; metrics at any edge."""

    def __init__(self, bins: int = BINS) -> None:
        self.bins = bins
        self.per_scene: dict[str, np.ndarray] = {}  # scene → (2, bins) int64: clear, cloud

    def update(
        self, scenes: Sequence[str], probs: Mask, target: Mask, valid: Mask | None = None
    ) -> None:
        """`scenes[i]` is the scene of item i of (B, ...) probabilities and {0, 1} targets."""
        names = sorted(set(scenes))
        slot = {s: i for i, s in enumerate(names)}
        item_slot = [slot[s] for s in scenes]
        width = 2 * self.bins
        if hasattr(probs, "detach"):
            import torch

            probs_t, target_t = cast(torch.Tensor, probs), cast(torch.Tensor, target)
            tkey = bin_index(probs_t, self.bins) + self.bins * target_t.long()
            tkey = tkey + width * torch.tensor(item_slot, device=tkey.device).view(
                -1, *([1] * (tkey.ndim - 1)))
            if valid is not None:
                tkey = tkey[torch.broadcast_to(cast(torch.Tensor, valid).bool(), tkey.shape)]
            counts = torch.bincount(tkey.flatten(), minlength=width * len(names)).cpu().numpy()
        else:
            key = bin_index(np.asarray(probs), self.bins)
            key = key + self.bins * np.asarray(target, np.int64)
            key = key + width * np.asarray(item_slot).reshape(-1, *([1] * (key.ndim - 1)))
            if valid is not None:
                key = key[np.broadcast_to(np.asarray(valid, bool), key.shape)]
            counts = np.bincount(key.ravel(), minlength=width * len(names))
        for s, block in zip(names, counts.reshape(len(names), 2, self.bins), strict=True):
            self.per_scene[s] = self.per_scene.get(s, 0) + block.astype(np.int64)

    def at(self, k: int) -> dict[str, Metrics]:
        """Each scene's counts for "cloud where p > k/bins" (1 <= k < bins)."""
        out = {}
        for scene, (clear, cloud) in self.per_scene.items():
            tp, fp = int(cloud[k:].sum()), int(clear[k:].sum())
            out[scene] = Metrics(tp, fp, int(cloud.sum()) - tp, int(clear.sum()) - fp)
        return out

    def pooled(self, k: int) -> Metrics:
        """Counts summed over scenes at threshold k/bins."""
        return sum(self.at(k).values(), Metrics(0, 0, 0, 0))

    def scene_mean(self, k: int, metric: str = "iou") -> float:
        """`metric` at threshold k/bins averaged over scenes (the 38-Cloud figure)."""
        return mean_over_scenes(self.at(k)[s] for s in sorted(self.per_scene))[metric]

    def best(self, metric: str = "iou", by_scene: bool = False, step: int = 2
             ) -> tuple[float, float]:
        """(threshold, value) maximising `metric`, pooled or averaged over scenes, among the
        edges that are multiples of `step`; the lowest such edge wins a tie. The default step 2
        keeps the threshold on the 1/255 grid that `cloudseg predict`'s probability files store
        (v = ceil(255·p)), so thresholding a file at it gives exactly the mask predict wrote.
        """
        scores = self._curve(metric, by_scene)
        edges = np.arange(step, self.bins, step)  # k = step, 2·step, ... < bins
        k = int(edges[int(np.argmax(scores[edges - 1]))])
        return k / self.bins, float(scores[k - 1])

    def _curve(self, metric: str, by_scene: bool) -> np.ndarray:
        """`metric` at every edge k = 1 .. bins−1, from cumulative sums."""
        if by_scene:
            return np.mean([_edge_metric(metric, h) for h in self.per_scene.values()], axis=0)
        total = sum(self.per_scene.values(), np.zeros((2, self.bins), np.int64))
        return _edge_metric(metric, total)


def _edge_metric(metric: str, hist: np.ndarray) -> np.ndarray:
    """`metric` at edges 1 .. bins−1 of one (clear, cloud) histogram."""
    clear, cloud = hist
    tp = np.cumsum(cloud[::-1])[::-1][1:]  # tp[k-1] = cloud pixels in bins >= k
    fp = np.cumsum(clear[::-1])[::-1][1:]
    return _metric(metric, tp, fp, cloud.sum() - tp, clear.sum() - fp)


def _metric(
    name: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> np.ndarray:
    """Vectorised `Metrics` figures (an empty denominator scores 1.0, as Metrics does)."""
    num, den = {
        "iou": (tp, tp + fp + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "dice": (2 * tp, 2 * tp + fp + fn),
        "accuracy": (tp + tn, tp + fp + fn + tn),
    }[name]
    return np.where(den > 0, num / np.maximum(den, 1), 1.0)

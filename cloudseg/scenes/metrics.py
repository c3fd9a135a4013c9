"""Validation scored the way the benchmark scores: per scene, then averaged over scenes.

Patch-level validation pools every pixel of the validation set, so large cloudy scenes dominate;
the 38-Cloud protocol instead averages per-scene figures (`cloudseg.scenes.evaluate`). `SceneMeter`
gives that figure for the validation scenes from the predictions a validation pass already makes.

Why no canvas: the confusion counts of a stitched scene are the sum of its non-overlapping
patches' counts, so grouping per-patch counts by scene is exactly "stitch, then count" (a test
checks this against `cloudseg.scenes.stitch.stitch`), without holding any scene in memory.

Cost (`train.val_metric: scene`, which `fit` uses to pick the best epoch; `metric: scene-iou`
in a study spec): the extra work over patch validation is four per-patch sums and one (4, B)
device→host copy per batch, which is negligible. The real cost is what makes the figure
meaningful: each validation scene must be predicted *whole*, i.e. every patch of the held-out
scenes at full 384 px (`data.crop` then does not apply to validation, and `data.max_val_patches`
must be None: a capped scene is not a scene). With the default 20 % of 18 38-Cloud training
scenes that is ~1,700 patches per evaluation, about 1/5 of an epoch over all 8,400 patches.

Differences from the official protocol, by design: padding and no-data margins are excluded
through `valid` (the official script counts margins as true negatives, which only moves
specificity and accuracy, not Jaccard, unless the model predicts cloud there), and the threshold
is the run's (`train.threshold`), not 12/255, unless given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from cloudseg.metrics import EMPTY, Mask, Metrics
from cloudseg.scenes.evaluate import mean_over_scenes

if TYPE_CHECKING:
    import torch


def patch_counts(pred: Mask, target: Mask, valid: Mask | None = None) -> np.ndarray:
    """(B, ...) boolean-like arrays (numpy or torch, any device) → (B, 4) int64 TP/FP/FN/TN per
    patch, with one host copy for the whole batch.
    """
    if hasattr(pred, "detach"):
        valid_t = cast("torch.Tensor | None", valid)
        return _tensor_counts(cast("torch.Tensor", pred), cast("torch.Tensor", target), valid_t)
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    v = np.ones_like(p) if valid is None else np.broadcast_to(np.asarray(valid, bool), p.shape)
    p, t, v = (a.reshape(len(a), -1) for a in (p, t, v))
    parts = [p & t, p & ~t, ~p & t, ~p & ~t]
    return np.stack([np.count_nonzero(q & v, axis=1) for q in parts], 1).astype(np.int64)


def _tensor_counts(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> np.ndarray:
    import torch

    pred, target = pred.bool(), target.bool()
    valid = (
        torch.ones_like(pred) if valid is None else torch.broadcast_to(valid.bool(), pred.shape)
    )
    pred, target, valid = pred.flatten(1), target.flatten(1), valid.flatten(1)
    parts = [pred & target, pred & ~target, ~pred & target, ~pred & ~target]
    return torch.stack([(p & valid).sum(1) for p in parts], 1).cpu().numpy().astype(np.int64)


class SceneMeter:
    """Accumulates confusion counts per scene over a validation pass; `mean()` reduces once."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.per_scene: dict[str, Metrics] = {}

    def update(
        self, scenes: Sequence[str], pred: Mask, target: Mask, valid: Mask | None = None
    ) -> None:
        """`scenes[i]` is the scene of patch i of the batch."""
        counts = patch_counts(pred, target, valid)
        if len(scenes) != len(counts):
            raise ValueError(f"{len(scenes)} scene names for a batch of {len(counts)} patches")
        for scene, row in zip(scenes, counts, strict=True):
            self.per_scene[scene] = self.per_scene.get(scene, EMPTY) + Metrics(*map(int, row))

    def update_from_logits(
        self, scenes: Sequence[str], logits: Mask, target: Mask, valid: Mask | None = None
    ) -> None:
        """Add a batch of raw scores (cloud where sigmoid(logit) > threshold)."""
        cut = math.log(self.threshold / (1 - self.threshold))  # sigmoid(x) > t ⇔ x > logit(t)
        self.update(scenes, logits > cut, target, valid)

    def update_from_probabilities(
        self, scenes: Sequence[str], probs: Mask, target: Mask, valid: Mask | None = None
    ) -> None:
        """Add a batch of probabilities (cloud where p > threshold)."""
        self.update(scenes, probs > self.threshold, target, valid)

    def mean(self) -> dict[str, float]:
        """Per-scene precision/recall/specificity/iou/accuracy averaged over scenes."""
        return mean_over_scenes(self.per_scene[s] for s in sorted(self.per_scene))

    @property
    def iou(self) -> float:
        """The scene-mean Jaccard: the 38-Cloud headline figure."""
        return self.mean()["iou"]


def scene_mean_iou(
    scenes: Sequence[str],
    probs: Mask,
    target: Mask,
    valid: Mask | None = None,
    threshold: float = 0.5,
) -> float:
    """One-shot form: per-patch probabilities (N, ...) with their scenes → scene-mean Jaccard."""
    meter = SceneMeter(threshold)
    meter.update_from_probabilities(scenes, probs, target, valid)
    return meter.iou

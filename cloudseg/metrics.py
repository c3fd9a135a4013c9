"""Streaming confusion counts → segmentation metrics ("count first, reduce later").

TP/FP/FN/TN are summed over a whole epoch (or a whole scene) and reduced once, never averaged
per batch. The same reduction serves validation, the sweep and the 38-Cloud evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    """Binary segmentation metrics for the cloud class, from exact pixel counts."""

    tp: int
    fp: int
    fn: int
    tn: int

    @staticmethod
    def _ratio(num: int, den: int) -> float:
        # An empty denominator means the quantity is vacuously perfect (e.g. no cloud and none
        # predicted): 1.0, as smp's `zero_division=1` convention.
        return float(num) / den if den else 1.0

    @property
    def iou(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def dice(self) -> float:
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self._ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float:
        return self._ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn)

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    def as_dict(self) -> dict[str, float | int]:
        """Counts and every derived metric, for JSON, user attributes and tables."""
        names = ("iou", "dice", "precision", "recall", "specificity", "accuracy")
        return {**asdict(self), **{n: getattr(self, n) for n in names}}

    @classmethod
    def from_dict(cls, data: dict) -> Metrics:
        return cls(int(data["tp"]), int(data["fp"]), int(data["fn"]), int(data["tn"]))


EMPTY = Metrics(0, 0, 0, 0)


def confusion_counts(pred, target, valid=None) -> Metrics:
    """Counts for boolean-like arrays (numpy or torch) of the same shape.

    `pred` and `target` are truthy where cloud; `valid` (optional) is truthy where a pixel counts
    (e.g. not no-data). Works on torch tensors on any device without a host copy of the masks.
    """
    if hasattr(pred, "detach"):  # torch: count on the device, move four numbers
        import torch

        pred, target = pred.bool(), target.bool()
        valid = torch.ones_like(pred) if valid is None else valid.bool().expand_as(pred)
        tp = (pred & target & valid).sum()
        fp = (pred & ~target & valid).sum()
        fn = (~pred & target & valid).sum()
        tn = (~pred & ~target & valid).sum()
        tp, fp, fn, tn = torch.stack([tp, fp, fn, tn]).tolist()
        return Metrics(tp, fp, fn, tn)
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    valid = (
        np.ones_like(pred)
        if valid is None
        else np.broadcast_to(np.asarray(valid, bool), pred.shape)
    )
    return Metrics(
        int(np.count_nonzero(pred & target & valid)),
        int(np.count_nonzero(pred & ~target & valid)),
        int(np.count_nonzero(~pred & target & valid)),
        int(np.count_nonzero(~pred & ~target & valid)),
    )


class ConfusionMeter:
    """Accumulates counts batch by batch; `.metrics` reduces once."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.metrics = EMPTY

    def update_from_logits(self, logits, target, valid=None) -> None:
        """`logits` (B,1,H,W) raw scores; target (B,1,H,W) {0,1}; valid broadcastable bool."""
        import math

        # sigmoid(x) > t  ⇔  x > logit(t): no sigmoid over the whole batch
        cut = math.log(self.threshold / (1 - self.threshold))
        self.update(logits > cut, target, valid)

    def update(self, pred, target, valid=None) -> None:
        self.metrics = self.metrics + confusion_counts(pred, target, valid)

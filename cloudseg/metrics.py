"""Streaming confusion counts → segmentation metrics ("count first, reduce later").

TP/FP/FN/TN are summed over a whole epoch (or a whole scene) and reduced once, never averaged
per batch. The same reduction serves validation, the sweep and the 38-Cloud evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np

if TYPE_CHECKING:
    import torch

# A boolean-like mask: a numpy array (or anything np.asarray takes) or a torch tensor.
Mask: TypeAlias = "np.ndarray | torch.Tensor"


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
        """Intersection over union, TP / (TP + FP + FN)."""
        return self._ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def dice(self) -> float:
        """Dice (F1), 2·TP / (2·TP + FP + FN)."""
        return self._ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        """TP / (TP + FP): how much of the predicted cloud is cloud."""
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN): how much of the cloud is found."""
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP): how much of the clear sky is left clear."""
        return self._ratio(self.tn, self.tn + self.fp)

    @property
    def accuracy(self) -> float:
        """Share of counted pixels classified right."""
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
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        """The counts back from `as_dict` output (derived metrics are recomputed)."""
        return cls(int(data["tp"]), int(data["fp"]), int(data["fn"]), int(data["tn"]))


EMPTY = Metrics(0, 0, 0, 0)


def confusion_counts(pred: Mask, target: Mask, valid: Mask | None = None) -> Metrics:
    """Counts for boolean-like arrays (numpy or torch) of the same shape.

    `pred` and `target` are truthy where cloud; `valid` (optional) is truthy where a pixel counts
    (e.g. not no-data). Works on torch tensors on any device without a host copy of the masks.
    """
    if hasattr(pred, "detach"):  # torch: count on the device, move four numbers
        valid_t = cast("torch.Tensor | None", valid)
        return _tensor_counts(cast("torch.Tensor", pred), cast("torch.Tensor", target), valid_t)
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    v = np.ones_like(p) if valid is None else np.broadcast_to(np.asarray(valid, bool), p.shape)
    return Metrics(
        int(np.count_nonzero(p & t & v)),
        int(np.count_nonzero(p & ~t & v)),
        int(np.count_nonzero(~p & t & v)),
        int(np.count_nonzero(~p & ~t & v)),
    )


def _tensor_counts(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None
) -> Metrics:
    import torch

    pred, target = pred.bool(), target.bool()
    valid = torch.ones_like(pred) if valid is None else valid.bool().expand_as(pred)
    tp = (pred & target & valid).sum()
    fp = (pred & ~target & valid).sum()
    fn = (~pred & target & valid).sum()
    tn = (~pred & ~target & valid).sum()
    tp, fp, fn, tn = torch.stack([tp, fp, fn, tn]).tolist()
    return Metrics(tp, fp, fn, tn)


class ConfusionMeter:
    """Accumulates counts batch by batch; `.metrics` reduces once."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.metrics = EMPTY

    def update_from_logits(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> None:
        """`logits` (B,1,H,W) raw scores; target (B,1,H,W) {0,1}; valid broadcastable bool."""
        import math

        # sigmoid(x) > t  ⇔  x > logit(t): no sigmoid over the whole batch
        cut = math.log(self.threshold / (1 - self.threshold))
        self.update(logits > cut, target, valid)

    def update(self, pred: Mask, target: Mask, valid: Mask | None = None) -> None:
        """Add the counts of one batch of boolean-like predictions."""
        self.metrics = self.metrics + confusion_counts(pred, target, valid)

"""Streaming confusion metrics: exact on hand-counted cases, the same streamed or in one go, the
same from numpy and torch, and no-data pixels left out when asked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudseg.metrics import EMPTY, ConfusionMeter, Metrics, confusion_counts

# 2×4 image: rows are (pred, target) pairs chosen so every cell of the confusion matrix differs.
PRED = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
TARGET = np.array([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=bool)
# TP: (0,0) (0,1) = 2; FP: (0,2) = 1; FN: (0,3) (1,0) (1,1) = 3; TN: (1,2) (1,3) = 2


def test_counts_and_metrics_match_a_hand_counted_case():
    m = confusion_counts(PRED, TARGET)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 3, 2)
    assert m.iou == pytest.approx(2 / 6)
    assert m.dice == pytest.approx(4 / 8)
    assert m.precision == pytest.approx(2 / 3)
    assert m.recall == pytest.approx(2 / 5)
    assert m.specificity == pytest.approx(2 / 3)
    assert m.accuracy == pytest.approx(4 / 8)


def test_valid_mask_leaves_pixels_out():
    valid = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=bool)  # drops one FP and one FN
    m = confusion_counts(PRED, TARGET, valid)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 0, 2, 2)
    assert m.precision == 1.0


def test_valid_mask_broadcasts_over_channels():
    # nodata masks come as (B,1,H,W) bool; predictions may carry the same shape
    pred, target = PRED[None, None], TARGET[None, None]
    valid = np.zeros((1, 1, 2, 4), dtype=bool)
    valid[..., 0, :] = True  # first row only
    m = confusion_counts(pred, target, valid)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 1, 0)


def test_torch_and_numpy_paths_agree():
    rng = np.random.default_rng(0)
    pred, target = rng.random((3, 1, 17, 13)) > 0.5, rng.random((3, 1, 17, 13)) > 0.4
    valid = rng.random((3, 1, 17, 13)) > 0.2
    from_numpy = confusion_counts(pred, target, valid)
    from_torch = confusion_counts(
        torch.from_numpy(pred), torch.from_numpy(target).to(torch.uint8), torch.from_numpy(valid)
    )
    assert from_torch == from_numpy
    assert all(isinstance(v, int) for v in (from_torch.tp, from_torch.fp, from_torch.fn))
    assert from_numpy.tp + from_numpy.fp + from_numpy.fn + from_numpy.tn == valid.sum()


def test_streaming_equals_one_shot_and_is_not_a_mean_of_batch_ious():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(6, 1, 8, 8))).float()
    target = torch.from_numpy(rng.random((6, 1, 8, 8)) > 0.5)
    target[0] = False  # an all-clear batch: its own IoU would be degenerate
    meter = ConfusionMeter(threshold=0.5)
    batch_ious = []
    for lo, hi in [(0, 1), (1, 4), (4, 6)]:
        meter.update_from_logits(logits[lo:hi], target[lo:hi])
        batch_ious.append(confusion_counts(logits[lo:hi] > 0, target[lo:hi]).iou)
    one_shot = confusion_counts(logits > 0, target)
    assert meter.metrics == one_shot
    assert meter.metrics.iou != pytest.approx(float(np.mean(batch_ious)))


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_threshold_on_logits_equals_threshold_on_probabilities(threshold):
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.normal(scale=3, size=(2, 1, 16, 16))).float()
    target = torch.from_numpy(rng.random((2, 1, 16, 16)) > 0.5)
    meter = ConfusionMeter(threshold)
    meter.update_from_logits(logits, target)
    assert meter.metrics == confusion_counts(torch.sigmoid(logits) > threshold, target)


def test_meter_passes_the_valid_mask_through():
    meter = ConfusionMeter()
    logits = torch.tensor([[[[5.0, 5.0, -5.0, -5.0]]]])
    target = torch.tensor([[[[1, 0, 1, 0]]]])
    meter.update_from_logits(logits, target, valid=torch.tensor([[[[True, False, True, True]]]]))
    assert meter.metrics == Metrics(tp=1, fp=0, fn=1, tn=1)


def test_empty_denominators_count_as_perfect():
    # no cloud in the target and none predicted: nothing was missed or invented
    m = confusion_counts(np.zeros(4, bool), np.zeros(4, bool))
    assert (m.iou, m.dice, m.precision, m.recall, m.specificity, m.accuracy) == (1,) * 6
    assert EMPTY.iou == 1.0 and EMPTY.accuracy == 1.0


def test_addition_and_dict_round_trip():
    a, b = Metrics(1, 2, 3, 4), Metrics(10, 20, 30, 40)
    assert a + b == Metrics(11, 22, 33, 44)
    assert EMPTY + a == a
    d = (a + b).as_dict()
    assert d["iou"] == pytest.approx(11 / 66) and d["tp"] == 11
    assert Metrics.from_dict(d) == a + b

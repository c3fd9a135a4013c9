"""Metrics from probability histograms equal metrics counted on the pixels, at every bin edge,
per scene and pooled, on numpy and torch inputs; the tuned threshold is the brute-force best."""

from __future__ import annotations

import numpy as np
import torch

from cloudseg.scenes.histograms import BINS, OFFICIAL_EDGE, ThresholdHistograms

EDGES = [1, OFFICIAL_EDGE, 100, 255, 509]


def _batch(seed: int = 0, n: int = 6):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 1, 20, 20), dtype=np.float32)
    # values sitting exactly on and just around the edges, where a rounding would flip them
    on_edges = (np.array(EDGES) / BINS).astype(np.float32)
    probs[:, 0, 0, : len(EDGES)] = on_edges
    probs[:, 0, 1, : len(EDGES)] = np.nextafter(on_edges, 1)
    probs[:, 0, 2, : len(EDGES)] = np.nextafter(on_edges, 0)
    probs[:, 0, 3, 0] = 0.0
    target = (rng.random(probs.shape) < 0.4).astype(np.int64)
    valid = rng.random(probs.shape) < 0.9
    scenes = [f"s{i % 3}" for i in range(n)]
    return scenes, probs, target, valid


def _direct(probs, target, valid, k):
    """Counts on the pixels themselves: `p > k/BINS` compared in float64."""
    pred, truth = probs.astype(np.float64) > k / BINS, target.astype(bool)
    v = valid
    return (int((pred & truth & v).sum()), int((pred & ~truth & v).sum()),
            int((~pred & truth & v).sum()), int((~pred & ~truth & v).sum()))


def test_counts_at_every_edge_equal_pixel_counts_per_scene():
    scenes, probs, target, valid = _batch()
    hist = ThresholdHistograms()
    hist.update(scenes[:4], probs[:4], target[:4], valid[:4])  # two batches, one scene in both
    hist.update(scenes[4:], probs[4:], target[4:], valid[4:])
    assert (probs == np.float32(OFFICIAL_EDGE / BINS)).any()
    for k in [*EDGES, 2, 254, 256, 508]:
        for scene, m in hist.at(k).items():
            rows = [i for i, s in enumerate(scenes) if s == scene]
            want = _direct(probs[rows], target[rows], valid[rows], k)
            assert (m.tp, m.fp, m.fn, m.tn) == want, (scene, k)
        pooled = hist.pooled(k)
        assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == _direct(probs, target, valid, k)
    assert abs(OFFICIAL_EDGE / BINS - 12 / 255) < 1e-15 and 255 / BINS == 0.5


def test_torch_and_numpy_inputs_give_the_same_histograms():
    scenes, probs, target, valid = _batch(1)
    a, b = ThresholdHistograms(), ThresholdHistograms()
    a.update(scenes, probs, target, valid)
    b.update(scenes, torch.from_numpy(probs), torch.from_numpy(target).float(),
             torch.from_numpy(valid))
    assert a.per_scene.keys() == b.per_scene.keys()
    for s in a.per_scene:
        np.testing.assert_array_equal(a.per_scene[s], b.per_scene[s])


def test_the_tuned_threshold_is_the_brute_force_best():
    scenes, probs, target, _ = _batch(2, n=9)
    probs = np.clip(probs * 0.6 + target * 0.3, 0, 1).astype(np.float32)  # informative
    hist = ThresholdHistograms()
    hist.update(scenes, probs, target)
    ones = np.ones(probs.shape, bool)

    def iou(counts):
        tp, fp, fn, _ = counts
        return tp / (tp + fp + fn)

    pooled = [iou(_direct(probs, target, ones, k)) for k in range(1, BINS)]
    by_scene = [np.mean([iou(_direct(probs[[i for i, s in enumerate(scenes) if s == sc]],
                                     target[[i for i, s in enumerate(scenes) if s == sc]],
                                     ones[:3], k)) for sc in ("s0", "s1", "s2")])
                for k in range(1, BINS)]
    for scores, flag in ((pooled, False), (by_scene, True)):
        # every edge, then (the default) only those on predict's 1/255 file grid
        threshold, value = hist.best("iou", by_scene=flag, step=1)
        k = int(np.argmax(scores)) + 1
        assert threshold == k / BINS and abs(value - scores[k - 1]) < 1e-12
        threshold, value = hist.best("iou", by_scene=flag)
        on_grid = [(scores[j - 1], -j) for j in range(2, BINS, 2)]
        k = -max(on_grid)[1]
        assert threshold == k / BINS and abs(value - scores[k - 1]) < 1e-12
        assert (threshold * 255) == round(threshold * 255)  # j/255: what a _prob.tif holds


def test_epoch_figures_at_each_rule_equal_pixel_counts():
    """The record's `precision_official`, `iou_tuned`, `scene_ious` ... are the pixels' own
    counts at 0.5, 12/255 and the tuned edge; select_at picks the epoch by that rule."""
    from cloudseg.metrics import Metrics
    from cloudseg.training.results import EpochRecord
    from cloudseg.training.thresholds import flat_figures, threshold_figures

    scenes, probs, target, valid = _batch(3, n=9)
    probs = np.clip(probs * 0.5 + target * 0.4, 0, 1).astype(np.float32)
    hist = ThresholdHistograms()
    hist.update(scenes, probs, target, valid)
    figures = threshold_figures(hist, 0.5, by_scene=False)
    flat = flat_figures(figures)
    tuned_k = round(flat["tuned_threshold"] * BINS)
    for rule, k in (("fixed", 255), ("official", OFFICIAL_EDGE), ("tuned", tuned_k)):
        tp, fp, fn, tn = _direct(probs, target, valid, k)
        assert figures[rule].pooled == Metrics(tp, fp, fn, tn)
        for scene in ("s0", "s1", "s2"):
            rows = [i for i, s in enumerate(scenes) if s == scene]
            stp, sfp, sfn, _ = _direct(probs[rows], target[rows], valid[rows], k)
            assert flat["scene_ious"][rule][scene] == stp / (stp + sfp + sfn)
    tp, fp, fn, _ = _direct(probs, target, valid, OFFICIAL_EDGE)
    assert flat["precision_official"] == tp / (tp + fp)
    assert flat["recall_official"] == tp / (tp + fn)
    assert flat["iou_tuned"] >= max(flat["iou_official"], figures["fixed"].pooled.iou)

    record = EpochRecord(1, 0.1, 0.1, figures["fixed"].pooled, 1.0, 1.0, thresholds=figures)
    assert record.score("patch", "official") == flat["iou_official"]
    assert record.score("scene", "tuned") == figures["tuned"].scene_iou
    assert record.score("patch", "fixed") == figures["fixed"].pooled.iou

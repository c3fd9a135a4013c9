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
        threshold, value = hist.best("iou", by_scene=flag)
        k = int(np.argmax(scores)) + 1
        assert threshold == k / BINS and abs(value - scores[k - 1]) < 1e-12

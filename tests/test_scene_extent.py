"""`train.ignore_nodata: padding` counts the 38-Cloud protocol's pixels on validation patches:
summed over a scene's patches, the counts equal `cloudseg evaluate`'s on the stitched, cropped
scene (margins scored on the network's output, the grid's padding left out)."""

from __future__ import annotations

import numpy as np
import pytest

from cloudseg.data.layout import PatchId
from cloudseg.scenes.evaluate import OFFICIAL_THRESHOLD, score_scene
from cloudseg.scenes.extent import extent_mask, extent_rects
from cloudseg.scenes.grid import SceneGrid
from cloudseg.scenes.metrics import SceneMeter


def test_extent_counts_equal_the_protocol_on_the_stitched_scene():
    rng = np.random.default_rng(0)
    h, w, p = 150, 230, 64  # a 3 x 4 grid of 64 px patches, padding on every side
    grid = SceneGrid.of_scene(h, w, patch=p)
    gt = (rng.random((h, w)) < 0.4).astype(np.uint8) * 255
    gt[:, :20] = 0  # a no-data margin: scored (the network says cloud on some of it)
    canvas = rng.random(grid.padded).astype(np.float32)  # the network's output, padding too
    padded_gt = grid.pad(gt)
    ids = [PatchId(idx=(r - 1) * grid.cols + c, row=r, col=c, scene="S")
           for r in range(1, grid.rows + 1) for c in range(1, grid.cols + 1)]
    patches = np.stack([canvas[(i.row - 1) * p:i.row * p, (i.col - 1) * p:i.col * p]
                        for i in ids])[:, None]
    targets = np.stack([padded_gt[(i.row - 1) * p:i.row * p, (i.col - 1) * p:i.col * p]
                        for i in ids])[:, None] > 0
    valid = extent_mask(extent_rects(ids, {"S": (h, w)}, patch=p), p).numpy()
    meter = SceneMeter(OFFICIAL_THRESHOLD)
    meter.update_from_probabilities(["S"] * len(ids), patches, targets, valid)
    expected = score_scene(grid.crop(canvas), gt)
    assert meter.per_scene["S"] == expected
    everything = SceneMeter(OFFICIAL_THRESHOLD)
    everything.update_from_probabilities(["S"] * len(ids), patches, targets)
    assert everything.per_scene["S"] != expected  # the padding would count otherwise
    assert int(valid.sum()) == h * w == expected.tp + expected.fp + expected.fn + expected.tn


def test_padding_needs_scene_validation_and_gives_every_val_item_an_extent(tmp_path):
    from cloudseg import ConfigError, parse_run_config, write_synthetic
    from cloudseg.training.build import build_run

    synthetic_root = write_synthetic(tmp_path / "data", 4, 0, (600, 700), 0,
                                     train_scene_gts=True)

    base = {"model": {"name": "vanilla-unet", "base_width": 4},
            "data": {"root": str(synthetic_root), "max_val_patches": None, "crop": 64},
            "train": {"device": "cpu", "ignore_nodata": "padding", "val_metric": "scene"}}
    run = build_run(parse_run_config(base))
    assert run.val_extents is not None and run.val_extents.shape == (run.data.n_val, 4)
    assert (run.val_extents[:, 1] > run.val_extents[:, 0]).all()
    base["train"]["val_metric"] = "patch"
    with pytest.raises(ConfigError, match="val_metric 'scene'"):
        build_run(parse_run_config(base))
    base["train"]["val_metric"] = "scene"
    for gt in (synthetic_root / "38-Cloud_training" / "Entire_scene_gts").iterdir():
        gt.unlink()  # no scene sizes: refused, naming the scenes
    with pytest.raises(ConfigError, match="missing for LC08_"):
        build_run(parse_run_config(base))

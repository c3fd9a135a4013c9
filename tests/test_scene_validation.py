"""train.val_metric "scene": fit's per-scene mean IoU equals stitching each validation scene
from the model's own predictions and counting it, differs from the pooled patch IoU, picks the
best epoch, and the settings that cannot score whole scenes are errors naming the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cloudseg.config import RunConfig, parse_run_config
from cloudseg.data import PatchDataset
from cloudseg.errors import ConfigError
from cloudseg.metrics import EMPTY, confusion_counts
from cloudseg.normalisation import nodata_mask, normalise
from cloudseg.scenes.stitch import grid_size, stitch
from cloudseg.training.loop import fit, seed_everything

VAL_SCENES = 2  # of the synthetic tree's 4 scenes (2x2 patches each)


def _config(val_metric: str = "scene", epochs: int = 1) -> RunConfig:
    return parse_run_config({
        "optim": {"batch_size": 3, "lr": 0.002, "schedule": "constant"},
        "train": {"epochs": epochs, "device": "cpu", "amp": False, "channels_last": False,
                  "max_steps_per_epoch": 2, "val_metric": val_metric},
    })


def _split(cache):
    scenes = sorted({r.id.scene for r in cache.records})
    val = [i for i, r in enumerate(cache.records) if r.id.scene in scenes[:VAL_SCENES]]
    train = [i for i, r in enumerate(cache.records) if r.id.scene not in scenes[:VAL_SCENES]]
    return np.array(train), np.array(val)


def _fit(cache, config: RunConfig):
    train_idx, val_idx = _split(cache)
    seed_everything(0)
    model = nn.Conv2d(4, 1, 1)  # a per-pixel brightness threshold: cheap at 384 px
    with torch.no_grad():  # cloud where the band sum > 1.2 (max-normalised): a fair detector
        model.weight.fill_(10.0)
        model.bias.fill_(-12.0)
    train = PatchDataset(cache, train_idx, crop=32, seed=0).loader(3, shuffle=True)
    # Batches of 3 over 4-patch scenes: a batch straddles two scenes.
    val = PatchDataset(cache, val_idx, crop=None, random_crop=False).loader(3)
    scenes = [cache.records[i].id.scene for i in val_idx]
    result = fit(model, nn.BCEWithLogitsLoss(), train, val, config, val_scenes=scenes)
    return model, result, val_idx


@torch.no_grad()
def _stitched_counts(cache, model, val_idx, tcfg):
    """Per scene: predict each whole patch, stitch prediction, truth and validity, count once."""
    by_scene: dict[str, list[int]] = {}
    for i in val_idx:
        by_scene.setdefault(cache.records[i].id.scene, []).append(int(i))
    counts = {}
    for scene, rows in by_scene.items():
        ids = [cache.records[i].id for i in rows]
        n_rows, n_cols = grid_size((p.row, p.col) for p in ids)
        raw = torch.from_numpy(np.asarray(cache.images[rows]))
        prob = torch.sigmoid(model(normalise(raw, tcfg)))[:, 0].numpy()
        valid = (~nodata_mask(raw))[:, 0].numpy()
        layers = {}
        for name, arrays in (("pred", prob > tcfg.threshold), ("valid", valid),
                             ("gt", np.asarray(cache.masks[rows]) > 0)):
            cells = [(p.row, p.col, a) for p, a in zip(ids, arrays, strict=True)]
            layers[name] = stitch(cells, n_rows, n_cols)
        counts[scene] = confusion_counts(layers["pred"], layers["gt"], layers["valid"])
    return counts


def test_fit_scene_iou_is_the_mean_over_stitched_scenes_not_the_pooled_iou(synthetic_cache):
    config = _config()
    model, result, val_idx = _fit(synthetic_cache, config)
    record = result.history[-1]  # the model as it is now scored that epoch
    counts = _stitched_counts(synthetic_cache, model, val_idx, config.train)
    assert len(counts) == VAL_SCENES
    per_scene = [m.iou for m in counts.values()]
    assert record.scene_iou == pytest.approx(sum(per_scene) / len(per_scene), abs=1e-12)
    pooled = sum(counts.values(), start=EMPTY)
    assert record.val == pooled  # the pooled counts are the same pixels
    # Scenes of different cloudiness: the mean over scenes is not the pooled figure.
    assert abs(per_scene[0] - per_scene[1]) > 0.01
    assert record.scene_iou != pytest.approx(record.val.iou, abs=1e-3)
    assert record.as_dict()["scene_iou"] == record.scene_iou
    assert result.best_record.metrics()["scene_iou"] == result.best_record.scene_iou


@pytest.mark.parametrize("val_metric", ["scene", "patch"])
def test_the_chosen_metric_picks_the_best_epoch(synthetic_cache, val_metric):
    _, result, _ = _fit(synthetic_cache, _config(val_metric, epochs=3))
    scores = [r.scene_iou if val_metric == "scene" else r.val.iou for r in result.history]
    assert result.best_epoch == 1 + int(np.argmax(scores))
    assert "scene_iou" not in result.history[0].val.as_dict()


def test_scene_metric_errors_name_the_field(synthetic_root, tmp_path):
    from cloudseg.training.build import run_training

    with pytest.raises(ConfigError, match="train.val_metric"):  # fails before any batch
        fit(nn.Conv2d(4, 1, 1), nn.BCEWithLogitsLoss(), [0], [0], _config())
    config = parse_run_config({
        "data": {"root": str(synthetic_root), "cache_dir": str(tmp_path), "max_val_patches": 2},
        "train": {"val_metric": "scene", "device": "cpu"},
    })
    with pytest.raises(ConfigError, match="data.max_val_patches.*got 2"):
        run_training(config)
    with pytest.raises(ConfigError, match="train.val_metric"):
        parse_run_config({"train": {"val_metric": "scenes"}})

"""Scene-disjoint split and the stratified, seeded training subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudseg.data import PatchId, PatchRecord, resample, split_by_scene
from cloudseg.errors import ConfigError


def make_records(n_scenes=10, per_scene=40, seed=0):
    """Records with a realistic spread of cloud fractions: many clear, many overcast."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_scenes):
        for k in range(per_scene):
            kind = rng.random()
            cf = 0.0 if kind < 0.3 else 1.0 if kind < 0.45 else float(rng.random())
            pid = PatchId(f"SCENE_{s:02d}", k // 8 + 1, k % 8 + 1, k + 1)
            records.append(PatchRecord(pid, {"red": Path(f"{pid.name}.TIF")},
                                       nonempty=rng.random() > 0.1, cloud_fraction=cf))
    return records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_is_scene_disjoint_and_complete(seed):
    records = make_records()
    split = split_by_scene(records, 0.2, seed)
    train_scenes = {records[i].id.scene for i in split.train}
    val_scenes = {records[i].id.scene for i in split.val}
    assert not train_scenes & val_scenes
    assert len(val_scenes) == 2 and len(train_scenes) == 8
    assert sorted([*split.train, *split.val]) == list(range(len(records)))
    assert split.train.dtype == np.int64 and split.val.dtype == np.int64
    assert set(split.val_scenes) == val_scenes


def test_split_is_deterministic_and_seeded():
    records = make_records()
    assert np.array_equal(split_by_scene(records, 0.3, 7).val, split_by_scene(records, 0.3, 7).val)
    vals = {tuple(split_by_scene(records, 0.3, s).val_scenes) for s in range(6)}
    assert len(vals) > 1


def test_split_keeps_a_scene_on_each_side(synthetic_cache):
    records = make_records(n_scenes=2)
    for fraction in (0.01, 0.99):
        split = split_by_scene(records, fraction, 0)
        assert len(split.train_scenes) == len(split.val_scenes) == 1
    with pytest.raises(ConfigError, match="at least 2 scenes"):
        split_by_scene(make_records(n_scenes=1), 0.2, 0)
    split = split_by_scene(synthetic_cache.records, 0.25, 0)
    assert len(split.val_scenes) == 1 and len(split.train_scenes) == 3


def cloud(records, rows):
    return np.mean([records[i].cloud_fraction for i in rows])


def test_resample_is_deterministic_and_keeps_the_class_ratio():
    records = make_records()
    pool = split_by_scene(records, 0.2, 0).train
    a, b = resample(records, pool, 0.5, seed=11), resample(records, pool, 0.5, seed=11)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, resample(records, pool, 0.5, seed=12))
    assert len(a) == round(0.5 * len(pool)) and set(a) <= set(pool)
    assert len(set(a)) == len(a)
    for seed in range(5):
        sub = resample(records, pool, 0.5, seed=seed)
        assert abs(cloud(records, sub) - cloud(records, pool)) < 0.02
        for value in (0.0, 1.0):  # the clear and overcast strata keep their share
            share = np.mean([records[i].cloud_fraction == value for i in sub])
            assert share == pytest.approx(np.mean([records[i].cloud_fraction == value
                                                   for i in pool]), abs=0.01)


def test_resample_drops_empty_patches_on_request():
    records = make_records()
    rows = np.arange(len(records))
    kept = resample(records, rows, 1.0, seed=0, drop_empty=True)
    assert np.array_equal(kept, [i for i in rows if records[i].nonempty])
    assert len(resample(records, rows, 1.0, seed=0)) == len(records)


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_resample_rejects_bad_fractions(fraction):
    with pytest.raises(ConfigError, match="fraction"):
        resample(make_records(), np.arange(10), fraction, seed=0)

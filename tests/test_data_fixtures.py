"""The shared data fixtures other tests build on: shapes and contents they promise."""

from __future__ import annotations

from cloudseg.data import BANDS, index_dataset


def test_synthetic_cache_matches_its_tree(synthetic_root, synthetic_cache):
    records = index_dataset(synthetic_root)
    assert len(synthetic_cache) == len(records) == 16
    assert synthetic_cache.images.shape == (16, len(BANDS), 384, 384)
    assert len(synthetic_cache.scenes) == 4
    assert len(index_dataset(synthetic_root, "test")) == 8


def test_real_sample_root_is_a_one_patch_training_tree(real_sample_root):
    (record,) = index_dataset(real_sample_root)
    assert record.id.idx == 192 and (record.id.row, record.id.col) == (10, 12)
    assert abs(record.cloud_fraction - 45333 / 384**2) < 1e-12

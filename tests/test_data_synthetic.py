"""The synthetic data set: the real layout and file format, deterministic per seed, zero margins,
the CSVs, whole-scene gts, and nothing left behind by a failure."""

from __future__ import annotations

import csv
import os
import stat

import numpy as np
import pytest
import rasterio

import cloudseg.data.synthetic as synthetic
from cloudseg.data import BANDS, index_dataset, read_band, write_synthetic
from cloudseg.errors import ConfigError
from tests.fixtures.data import REAL_NAME, real_sample_dir

SMALL = {"train_scenes": 1, "test_scenes": 1, "scene_size": (400, 500)}


def files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def names(path):
    with path.open() as fh:
        return [row["name"] for row in csv.DictReader(fh)]


def describe(path):
    with rasterio.open(path) as src:
        return src.profile, src.tags(), src.tags(ns="IMAGE_STRUCTURE"), src.crs, src.nodata


@pytest.mark.parametrize("band", [*BANDS, "gt"])
def test_files_match_the_real_patch_format(synthetic_root, band):
    real = describe(real_sample_dir() / f"{band}_{REAL_NAME}.TIF")
    ours = describe(next((synthetic_root / "38-Cloud_training" / f"train_{band}").iterdir()))
    assert ours == real  # dtype, size, PackBits, 21-row strips, 72 dpi tags, no CRS, no nodata


def test_pixel_values_look_like_landsat_dn(synthetic_cache):
    images, masks = synthetic_cache.images, synthetic_cache.masks
    valid = images.any(axis=1)
    assert images.max() < 65535 and images[:, :, valid.any(axis=0)].min() >= 0
    cloud_red = images[:, 0][valid & (masks == 1)].mean()
    clear_red = images[:, 0][valid & (masks == 0)].mean()
    assert 5000 < clear_red < cloud_red < 40000
    assert 0.05 < masks[valid].mean() < 0.8


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = write_synthetic(tmp_path / "a", seed=3, **SMALL)
    b = write_synthetic(tmp_path / "b", seed=3, **SMALL)
    c = write_synthetic(tmp_path / "c", seed=4, **SMALL)
    assert [p.relative_to(a) for p in files(a)] == [p.relative_to(b) for p in files(b)]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(files(a), files(b), strict=True))
    red = sorted((a / "38-Cloud_training/train_red").iterdir())[0].name
    assert not np.array_equal(read_band(a / "38-Cloud_training/train_red" / red),
                              read_band(c / "38-Cloud_training/train_red" / red))


def _numbered_scene(rng, height, width):
    """Every pixel distinct and non-zero, so any misplaced or cropped pixel shows."""
    values = np.arange(1, height * width + 1, dtype=np.int64).reshape(height, width)
    bands = np.stack([(values * (b + 1)) % 60000 + 1 for b in range(4)]).astype(np.uint16)
    return bands, np.where(values % 3 == 0, 255, 0).astype(np.uint8)


@pytest.mark.parametrize("size", [(400, 500), (769, 1153), (768, 384)])
def test_scenes_are_padded_around_their_centre_as_38_cloud_does(tmp_path, monkeypatch, size):
    """Reference from the 38-Cloud facts, not from the production grid: a scene sits at row
    floor((rows*384 - H)/2), column floor((cols*384 - W)/2) of its zero-padded canvas."""
    monkeypatch.setattr(synthetic, "make_scene", _numbered_scene)
    h, w = size
    root = write_synthetic(tmp_path / "s", train_scenes=1, test_scenes=0, scene_size=size)
    bands, gt = _numbered_scene(None, h, w)
    rows, cols = -(-h // 384), -(-w // 384)
    top, left = (rows * 384 - h) // 2, (cols * 384 - w) // 2
    records = index_dataset(root)
    assert len(records) == rows * cols
    for b, band in enumerate([*BANDS, "gt"]):
        scene = gt if band == "gt" else bands[b]
        expected = np.zeros((rows * 384, cols * 384), scene.dtype)
        expected[top : top + h, left : left + w] = scene
        for r in records:
            assert r.id.idx == (r.id.row - 1) * cols + r.id.col
            y, x = (r.id.row - 1) * 384, (r.id.col - 1) * 384
            np.testing.assert_array_equal(
                read_band(r.files[band]), expected[y : y + 384, x : x + 384])


def test_csvs_and_whole_scene_gts(tmp_path):
    root = write_synthetic(tmp_path / "s", seed=0, **SMALL)
    train = index_dataset(root)
    assert names(root / "38-Cloud_training/training_patches_38-Cloud.csv") == [
        r.name for r in train]
    nonempty = names(root / "training_patches_38-cloud_nonempty.csv")
    assert nonempty == [r.name for r in train if any(read_band(r.files[b]).any() for b in BANDS)]
    test = index_dataset(root, "test")
    assert names(root / "38-Cloud_test/test_patches_38-Cloud.csv") == [r.name for r in test]
    (scene_gt,) = (root / "38-Cloud_test/Entire_scene_gts").iterdir()
    assert scene_gt.name == f"edited_corrected_gts_{test[0].id.scene}.TIF"
    gt = read_band(scene_gt)
    assert gt.shape == (400, 500) and set(np.unique(gt)) == {0, 255}


def test_existing_output_and_bad_sizes_are_refused(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        write_synthetic(tmp_path / "full")
    with pytest.raises(ConfigError, match="scene_size"):
        write_synthetic(tmp_path / "tiny", scene_size=(10, 10))
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real_write = synthetic.write_band

    def failing_write(path, array):  # the disk fills up after a few files
        calls.append(path)
        if len(calls) > 7:
            raise OSError(28, "No space left on device")
        real_write(path, array)

    monkeypatch.setattr(synthetic, "write_band", failing_write)
    with pytest.raises(OSError, match="No space"):
        write_synthetic(tmp_path / "out", seed=0, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_parallel_writing_gives_the_same_tree_and_coarse_keeps_the_size(tmp_path):
    kw = {"train_scenes": 2, "test_scenes": 1, "scene_size": (400, 500), "seed": 4}
    one = write_synthetic(tmp_path / "one", **kw)
    two = write_synthetic(tmp_path / "two", workers=2, **kw)
    assert [p.relative_to(one) for p in files(one)] == [p.relative_to(two) for p in files(two)]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files(one), files(two),
                                                                 strict=True))
    coarse = write_synthetic(tmp_path / "coarse", coarse=4, **kw)
    (gt,) = (coarse / "38-Cloud_test/Entire_scene_gts").iterdir()
    with rasterio.open(gt) as src:
        assert src.shape == (400, 500)
        block = src.read(1)[100:104, 200:204]
    assert (block == block[0, 0]).all()  # drawn at 1/4 size: 4x4 blocks
    assert len(index_dataset(coarse)) == 2 * 2 * 2


def test_the_tree_is_readable_by_other_users_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        root = write_synthetic(tmp_path / "tree", train_scenes=1, test_scenes=0)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")] if p.is_dir()}
    assert modes == {0o755}
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}

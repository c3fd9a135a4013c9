"""The packed cache: exact contents, rebuilt when the source changes, safe under concurrent
prepares, and a half-written cache (a crash) is never used."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil

import numpy as np
import pytest

from cloudseg.data import BANDS, find_layout, open_cache, prepare_cache, read_band, write_band
from cloudseg.data.cache import COMPLETE, default_cache_dir, fingerprint
from cloudseg.errors import CacheError, LayoutError


def versions(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if p.is_dir())


def assert_matches_files(cache):
    for row, record in enumerate(cache.records):
        for b, band in enumerate(BANDS):
            np.testing.assert_array_equal(cache.images[row, b], read_band(record.files[band]))
        np.testing.assert_array_equal(cache.masks[row], read_band(record.files["gt"]) // 255)


@pytest.fixture
def tree(synthetic_root, tmp_path):
    return shutil.copytree(synthetic_root, tmp_path / "tree")


def test_cache_holds_every_training_patch_exactly(synthetic_cache):
    assert synthetic_cache.images.shape == (16, 4, 384, 384)
    assert set(np.unique(synthetic_cache.masks)) <= {0, 1}
    assert_matches_files(synthetic_cache)
    assert not synthetic_cache.images.flags.writeable


def test_default_location_follows_the_environment(synthetic_root, monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSEG_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir(synthetic_root).parent == tmp_path / "c"
    assert default_cache_dir(synthetic_root) == default_cache_dir(str(synthetic_root) + "/.")
    assert open_cache(synthetic_root).path.parent == default_cache_dir(synthetic_root)


def test_second_open_reuses_and_a_change_rebuilds(tree, tmp_path):
    first = open_cache(tree, tmp_path / "c")
    assert open_cache(tree, tmp_path / "c").path == first.path
    red = first.records[5].files["red"]
    write_band(red, np.full((384, 384), 1234, np.uint16))
    os.utime(red, ns=(1, 1))  # even an mtime rewound into the past is a change
    second = open_cache(tree, tmp_path / "c")
    assert second.path != first.path
    assert (second.images[5, 0] == 1234).all()
    assert versions(tmp_path / "c") == [second.path.name]  # the stale version is gone


def test_a_half_written_cache_is_never_used(tree, tmp_path):
    cache_dir = tmp_path / "c"
    final = cache_dir / fingerprint(find_layout(tree))[:20]
    final.mkdir(parents=True)  # a crash after some bytes, before the COMPLETE marker
    (final / "images.npy").write_bytes(b"\x93NUMPY garbage")
    (cache_dir / ".build-crashed").mkdir()
    cache = open_cache(tree, cache_dir)
    assert cache.path == final and (final / COMPLETE).is_file()
    assert_matches_files(cache)
    assert versions(cache_dir) == [final.name]
    # a marker next to a cut array (disk full) is not trusted either
    data = (final / "masks.npy").read_bytes()
    (final / "masks.npy").write_bytes(data[:1000])
    assert_matches_files(open_cache(tree, cache_dir))


def _prepare(args):
    root, cache_dir, barrier = args
    barrier.wait()
    cache = prepare_cache(root, cache_dir)
    return str(cache.path), int(cache.images[:, 0].sum(dtype=np.int64))


def test_two_processes_preparing_at_once_leave_one_valid_cache(tree, tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2) as pool:
            results = pool.map(_prepare, [(tree, tmp_path / "c", barrier)] * 2)
    assert results[0] == results[1]
    assert versions(tmp_path / "c") == [os.path.basename(results[0][0])]
    assert_matches_files(open_cache(tree, tmp_path / "c"))


def test_cache_pickles_by_path_not_by_pixels(synthetic_cache):
    blob = pickle.dumps(synthetic_cache)
    assert len(blob) < synthetic_cache.masks.nbytes
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.images[3], synthetic_cache.images[3])


def test_bad_tree_raises_and_leaves_no_cache(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        prepare_cache(tmp_path / "missing", tmp_path / "c")
    bad = tmp_path / "bad" / "38-Cloud_training" / "train_red"
    bad.mkdir(parents=True)
    with pytest.raises(LayoutError, match="missing folder 38-Cloud_training/train_nir/"):
        prepare_cache(tmp_path / "bad", tmp_path / "c")
    assert not (tmp_path / "c").exists()  # no empty folder, no .lock


def test_a_rejected_tree_leaves_nothing_in_the_default_cache_location(
        synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSEG_CACHE_DIR", str(tmp_path / "caches"))
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    next((tree / "38-Cloud_training" / "train_gt").iterdir()).write_bytes(b"broken")
    with pytest.raises(LayoutError, match="unreadable or truncated TIFF"):
        open_cache(tree)
    assert not (tmp_path / "caches").exists()


def test_a_cache_folder_that_cannot_be_made_is_a_cache_error(synthetic_root, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match=r"cache folder .*file/c: cannot write there"):
        prepare_cache(synthetic_root, tmp_path / "file" / "c")

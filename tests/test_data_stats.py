"""Statistics against values computed independently from the TIFF files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from cloudseg.data import (
    BANDS,
    PatchCache,
    PatchId,
    PatchRecord,
    compute_stats,
    index_dataset,
    plot_stats,
    subset_moments,
)
from cloudseg.data.moments import FILENAME


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def rank_auc(pos, neg):
    """Mann-Whitney AUC from average ranks (ties share their rank)."""
    values = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    average = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average[inverse]
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def from_files(synthetic_root):
    records = index_dataset(synthetic_root)
    images = np.stack([np.stack([read(r.files[b]) for b in BANDS]) for r in records])
    gts = np.stack([read(r.files["gt"]) for r in records])
    return images, gts


def test_pixel_counts_and_pos_weight_match_the_files(synthetic_cache, from_files):
    images, gts = from_files
    valid = images.any(axis=1)
    cloud = int(((gts == 255) & valid).sum())
    clear = int(((gts == 0) & valid).sum())
    stats = compute_stats(synthetic_cache)
    assert (stats.cloud_pixels, stats.background_pixels) == (cloud, clear)
    assert stats.nodata_pixels == int((~valid).sum()) > 0  # the synthetic margins
    assert stats.cloud_pixels + stats.background_pixels + stats.nodata_pixels == 16 * 384**2
    assert stats.pos_weight == pytest.approx(clear / cloud)
    assert stats.pos_weight_all_pixels == pytest.approx((clear + int((~valid).sum())) / cloud)
    assert stats.n_patches == 16


def test_band_mean_std_over_valid_pixels(synthetic_cache, from_files):
    images, _ = from_files
    valid = images.any(axis=1)
    stats = compute_stats(synthetic_cache)
    for b in range(4):
        pixels = images[:, b][valid].astype(np.float64)
        assert stats.band_mean[b] == pytest.approx(pixels.mean(), rel=1e-9)
        assert stats.band_std[b] == pytest.approx(pixels.std(), rel=1e-9)


def test_band_auc_equals_the_rank_statistic(synthetic_cache, from_files):
    images, gts = from_files
    rows = [0, 9]
    stats = compute_stats(synthetic_cache, rows)
    valid = images[rows].any(axis=1)
    is_cloud = (gts[rows] == 255)[valid]
    for b in range(4):
        pixels = images[rows, b][valid]
        assert stats.band_auc[b] == pytest.approx(rank_auc(pixels[is_cloud], pixels[~is_cloud]))
    assert all(0.5 < a < 1 for a in compute_stats(synthetic_cache).band_auc)


def test_a_selection_without_cloud_has_infinite_pos_weight_and_no_auc(synthetic_cache):
    stats = compute_stats(synthetic_cache, [])
    assert stats.n_patches == 0 and stats.cloud_pixels == 0 and math.isinf(stats.pos_weight)
    d = stats.as_dict()
    assert d["pos_weight"] is None and d["bands"]["red"]["auc"] is None


def test_plots_are_png_files(synthetic_cache, tmp_path):
    paths = plot_stats(compute_stats(synthetic_cache), tmp_path / "plots")
    assert [p.name for p in paths] == ["class_balance.png", "band_distributions.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_subset_moments_match_the_files(synthetic_cache, from_files):
    """What a run's config takes (class balance, band mean/std of its training subset), from
    per-patch sums, against the subset's pixels read from the TIFFs with rasterio.
    """
    images, gts = from_files
    rows = [1, 4, 5, 9, 14]
    got = subset_moments(synthetic_cache, rows)
    valid = images[rows].any(axis=1)
    assert got.cloud_pixels == int(((gts[rows] == 255) & valid).sum())
    assert got.background_pixels == int(((gts[rows] == 0) & valid).sum())
    for b in range(4):
        pixels = images[rows, b][valid].astype(np.float64)
        assert got.band_mean[b] == pytest.approx(pixels.mean(), rel=1e-12)
        assert got.band_std[b] == pytest.approx(pixels.std(), rel=1e-12)
    assert got.pos_weight == pytest.approx(compute_stats(synthetic_cache, rows).pos_weight)


def test_patch_sums_are_kept_beside_the_cache_and_reused(tmp_path):
    image = np.full((2, 4, 384, 384), 65535, np.uint16)  # the largest DN: no overflow
    image[1, :, :, :100] = 0  # a no-data margin
    mask = np.zeros((2, 384, 384), np.uint8)
    mask[0, :10] = 1
    records = [PatchRecord(PatchId("S", 1, i + 1, i + 1), {}, True, None) for i in range(2)]
    cache = PatchCache(tmp_path, tmp_path, records, image, mask, fingerprint="hand-made")
    got = subset_moments(cache, [0, 1])
    assert got.band_mean == (65535.0,) * 4 and got.band_std == (0.0,) * 4
    assert got.cloud_pixels == 10 * 384
    assert got.background_pixels == 384 * 384 + 384 * 284 - 10 * 384
    kept = tmp_path / FILENAME
    assert kept.is_file()
    with np.load(kept) as stored:
        sums = {k: stored[k] for k in stored.files}
    sums["cloud"] = sums["cloud"] * 0 + 7  # a marker: read back, not recomputed
    np.savez(kept, **sums)
    assert subset_moments(cache, [0, 1]).cloud_pixels == 14
    np.savez(kept, **{k: v[:1] for k, v in sums.items()})  # rows do not match: recomputed
    assert subset_moments(cache, [0, 1]).cloud_pixels == 10 * 384


def test_subset_moments_of_nothing_say_so(synthetic_cache):
    got = subset_moments(synthetic_cache, [])
    assert math.isinf(got.pos_weight) and all(math.isnan(m) for m in got.band_mean)


def test_prepare_packs_the_sums_and_an_older_cache_gets_them_when_opened(synthetic_cache,
                                                                         from_files):
    """The sums (and panel traits) are written while packing, before the COMPLETE marker (so
    a sweep's first trial never computes them); a cache packed without them gets them on its
    next open.
    """
    from cloudseg.data import open_cache
    from cloudseg.data.cache import COMPLETE

    kept = synthetic_cache.path / FILENAME
    assert kept.stat().st_mtime_ns <= (synthetic_cache.path / COMPLETE).stat().st_mtime_ns
    with np.load(kept) as stored:
        packed = {k: stored[k] for k in stored.files}
    images, gts = from_files
    valid = images.any(axis=1)
    assert packed["valid"].tolist() == valid.sum(axis=(1, 2)).tolist()
    assert packed["cloud"].tolist() == ((gts == 255) & valid).sum(axis=(1, 2)).tolist()
    wide = images.astype(np.int64)
    assert packed["square"].tolist() == (wide * wide).sum(axis=(2, 3)).tolist()
    # and the hard-case panel's traits, so choosing a study's panel reads no pixels
    from dataclasses import astuple

    from cloudseg.data.sums import patch_traits
    assert packed["traits"].tolist() == [list(astuple(patch_traits(i, g)))
                                         for i, g in zip(images, gts, strict=True)]
    kept.unlink()  # as a cache packed before the sums were kept
    again = open_cache(synthetic_cache.root, cache_dir=synthetic_cache.path.parent)
    assert again.path == synthetic_cache.path and kept.is_file()
    with np.load(kept) as stored:
        assert all(np.array_equal(stored[k], packed[k]) for k in packed)

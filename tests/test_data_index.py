"""Index and validation: the real patch indexes with its exact pixels; every kind of broken tree
gets one LayoutError that names the file at fault."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from cloudseg.data import BANDS, index_dataset, open_cache, write_band
from cloudseg.errors import LayoutError
from tests.fixtures.data import REAL_NAME

TRAIN = "38-Cloud_training"


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture
def tree(real_sample_root, tmp_path):
    """A writable copy of the one-patch real training tree."""
    return shutil.copytree(real_sample_root, tmp_path / "tree")


def band_file(root, band, name=REAL_NAME):
    return root / TRAIN / f"train_{band}" / f"{band}_{name}.TIF"


def problems(root):
    with pytest.raises(LayoutError) as info:
        index_dataset(root)
    return str(info.value)


def test_real_patch_indexes_and_loads_with_the_exact_pixels_of_its_files(real_sample_root,
                                                                          tmp_path):
    (record,) = index_dataset(real_sample_root)
    assert record.id.name == REAL_NAME and record.nonempty
    assert record.cloud_fraction == pytest.approx(45333 / 384**2)
    cache = open_cache(real_sample_root, tmp_path / "cache")
    for b, band in enumerate(BANDS):
        np.testing.assert_array_equal(cache.images[0, b], read(record.files[band]))
    np.testing.assert_array_equal(cache.masks[0], read(record.files["gt"]) // 255)
    assert cache.images.dtype == np.uint16 and cache.masks.dtype == np.uint8
    assert int(cache.masks.sum()) == 45333


def test_missing_band_and_gt_are_named(tree):
    band_file(tree, "nir").unlink()
    band_file(tree, "gt").unlink()
    msg = problems(tree)
    assert f"missing nir (38-Cloud_training/train_nir/nir_{REAL_NAME}.TIF)" in msg
    assert f"missing gt (38-Cloud_training/train_gt/gt_{REAL_NAME}.TIF)" in msg


def test_missing_band_folder_is_named(tree):
    shutil.rmtree(tree / TRAIN / "train_blue")
    assert "missing folder 38-Cloud_training/train_blue/" in problems(tree)


def test_wrong_shape_and_disagreeing_bands_are_named(tree):
    write_band(band_file(tree, "green"), np.ones((384, 383), np.uint16))
    msg = problems(tree)
    assert f"green_{REAL_NAME}.TIF: shape 384x383, expected 384x384" in msg
    assert "bands disagree in shape" in msg and "green 384x383" in msg


def test_wrong_dtype_is_named(tree):
    write_band(band_file(tree, "red"), np.ones((384, 384), np.float32))
    assert f"red_{REAL_NAME}.TIF: dtype float32, expected uint16" in problems(tree)


def test_gt_with_values_other_than_0_255_is_named(tree):
    write_band(band_file(tree, "gt"), np.full((384, 384), 1, np.uint8))
    assert f"gt_{REAL_NAME}.TIF: gt values [1], expected 0/255" in problems(tree)


def test_unreadable_and_truncated_tiffs_are_named(tree):
    band_file(tree, "blue").write_bytes(b"not a tiff at all")
    # the published files keep their directory at the end: cut, they do not open at all
    data = band_file(tree, "nir").read_bytes()
    band_file(tree, "nir").write_bytes(data[: len(data) // 2])
    # GDAL-written files keep it at the start: cut, they open but their strips run off the end
    write_band(band_file(tree, "red"), read(band_file(tree, "green")))
    data = band_file(tree, "red").read_bytes()
    band_file(tree, "red").write_bytes(data[: len(data) - 1000])
    msg = problems(tree)
    assert f"blue_{REAL_NAME}.TIF: unreadable or truncated TIFF" in msg
    assert f"nir_{REAL_NAME}.TIF: unreadable or truncated TIFF" in msg
    assert f"red_{REAL_NAME}.TIF: truncated TIFF ({len(data) - 1000} bytes" in msg


def test_duplicate_patch_across_38_and_95_cloud_folders_is_named(tree):
    extra = tree / "95-cloud_training_only_additional_to38-cloud" / "train_red_additional_to38cloud"
    extra.mkdir(parents=True)
    shutil.copy(band_file(tree, "red"), extra)
    msg = problems(tree)
    assert f"duplicate patch {REAL_NAME} (red)" in msg and "train_red_additional_to38cloud" in msg
    assert len(index_dataset(tree, include_additional=False)) == 1


def test_stray_files_are_named_and_the_list_is_capped_with_a_count(tree):
    (band_file(tree, "red").parent / "notes.txt").write_text("x")
    shutil.copy(band_file(tree, "red"), band_file(tree, "nir").parent / f"red_{REAL_NAME}.TIF")
    for k in range(30):
        (tree / TRAIN / "train_gt" / f"junk{k:02d}.TIF").write_bytes(b"")
    with pytest.raises(LayoutError) as info:
        index_dataset(tree)
    msg = str(info.value)
    assert len(info.value.problems) == 32
    assert "32 problem(s)" in msg and "... and 12 more" in msg
    assert "stray file 38-Cloud_training/train_gt/junk00.TIF" in msg
    assert any(f"train_nir/red_{REAL_NAME}.TIF" in p for p in info.value.problems)
    assert any("train_red/notes.txt" in p for p in info.value.problems)


def test_csv_entries_without_files_are_named(tree):
    (tree / TRAIN / "training_patches_38-Cloud.csv").write_text(
        f"name\n{REAL_NAME}\npatch_1_1_by_1_LC08_L1TP_002053_20160520_20170324_01_T1\n")
    assert "lists patch_1_1_by_1_LC08_L1TP_002053" in problems(tree)


def test_nonempty_flag_comes_from_the_csv_when_it_covers_the_scene(synthetic_root, tmp_path):
    records = index_dataset(synthetic_root)
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    csv = tree / "training_patches_38-cloud_nonempty.csv"
    names = [r.name for r in records]
    csv.write_text("name\n" + "\n".join(names[1:]) + "\n")  # claims patch 0 is empty
    flags = [r.nonempty for r in index_dataset(tree)]
    assert flags == [False] + [True] * (len(names) - 1)
    csv.unlink()  # without the CSV the pixels decide
    assert [r.nonempty for r in index_dataset(tree)] == [r.nonempty for r in records]


def test_test_split_has_bands_but_no_gt(synthetic_root):
    records = index_dataset(synthetic_root, "test")
    assert len(records) == 8
    assert all(set(r.files) == set(BANDS) and r.cloud_fraction is None for r in records)


def test_95cloud_additional_patches_join_the_training_set(synthetic_root, tmp_path):
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    extra = tree / "95-cloud_training_only_additional_to38-cloud"
    for band in (*BANDS, "gt"):
        folder = extra / f"train_{band}_additional_to38cloud"
        folder.mkdir(parents=True)
        for path in sorted((tree / TRAIN / f"train_{band}").iterdir())[:4]:
            shutil.copy(path, folder / path.name.replace("_01_T1", "_02_T1"))  # a new scene
    records = index_dataset(tree)
    assert len(records) == 20 and len({r.id.scene for r in records}) == 8  # 4 new scenes
    added = [r for r in records if r.id.scene.endswith("_02_T1")]
    assert all(extra in r.files["nir"].parents for r in added)
    assert len(index_dataset(tree, include_additional=False)) == 16
    assert len(open_cache(tree, tmp_path / "c")) == 20


SCENE = "LC08_L1TP_100030_20200115_20200128_01_T1"  # the first synthetic scene (2 x 2 patches)


def _rename_patch(tree, old: str, new: str) -> None:
    for band in (*BANDS, "gt"):
        folder = tree / TRAIN / f"train_{band}"
        (folder / f"{band}_{old}.TIF").rename(folder / f"{band}_{new}.TIF")


def test_an_index_that_disagrees_with_the_grid_position_is_named(synthetic_root, tmp_path):
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    # swap the indices of two patches: names still parse, places no longer add up
    _rename_patch(tree, f"patch_2_1_by_2_{SCENE}", f"patch_3_1_by_2_{SCENE}")
    _rename_patch(tree, f"patch_3_2_by_1_{SCENE}", f"patch_2_2_by_1_{SCENE}")
    with pytest.raises(LayoutError) as info:
        index_dataset(tree)
    grid = [p for p in info.value.problems if "grid position" in p]
    assert grid == [
        f"patch_3_1_by_2_{SCENE}: index 3 does not match its grid position row 1, col 2 "
        "(idx = (row-1)*n_cols + col = 2 with the scene's 2 columns)",
        f"patch_2_2_by_1_{SCENE}: index 2 does not match its grid position row 2, col 1 "
        "(idx = (row-1)*n_cols + col = 3 with the scene's 2 columns)",
    ]


def test_a_partial_scene_infers_its_column_count_from_the_indices(real_sample_root):
    # patch 192 at row 10, col 12 means a 20-column scene; the largest col seen (12) does not
    (record,) = index_dataset(real_sample_root)
    assert (record.id.idx, record.id.row, record.id.col) == (192, 10, 12)


def test_a_nonempty_csv_listing_a_patch_without_files_is_named(synthetic_root, tmp_path):
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    csv = tree / "training_patches_38-cloud_nonempty.csv"
    csv.write_text(csv.read_text() + f"patch_9_3_by_3_{SCENE}\n")
    assert problems(tree).endswith(
        f"training_patches_38-cloud_nonempty.csv lists patch_9_3_by_3_{SCENE} but its files "
        "are missing")


def test_a_symlink_loop_is_named_as_such_not_as_a_missing_folder(tree):
    shutil.rmtree(tree / TRAIN / "train_blue")
    (tree / TRAIN / "train_blue").symlink_to("train_blue")
    with pytest.raises(LayoutError) as info:
        index_dataset(tree)
    assert str(info.value) == (f"{tree / TRAIN / 'train_blue'} is a symlink loop (following it "
                               "leads back to itself)")


def test_a_patch_file_that_is_a_symlink_loop_or_dead_link_is_named(tree):
    band_file(tree, "red").unlink()
    band_file(tree, "red").symlink_to(band_file(tree, "red").name)
    band_file(tree, "nir").unlink()
    band_file(tree, "nir").symlink_to("/nonexistent/nir.TIF")
    msg = problems(tree)
    assert f"{TRAIN}/train_red/red_{REAL_NAME}.TIF is a symlink loop" in msg
    assert f"{TRAIN}/train_nir/nir_{REAL_NAME}.TIF is a broken symlink (its target " \
           "/nonexistent/nir.TIF does not exist)" in msg
    assert "stray file" not in msg


def test_a_root_that_is_a_symlink_loop_is_named(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(LayoutError, match="data root .*loop is a symlink loop"):
        index_dataset(tmp_path / "loop")


def test_a_tiff_error_names_the_file_once_and_is_not_cut(tmp_path, real_sample_root):
    deep = tmp_path.joinpath(*["a_rather_long_folder_name"] * 8)
    tree = shutil.copytree(real_sample_root, deep / "tree")
    band_file(tree, "blue").write_bytes(b"not a tiff at all")
    (msg,) = [p for p in (problems(tree).splitlines()) if "blue_" in p]
    assert msg.endswith(f"blue_{REAL_NAME}.TIF: unreadable or truncated TIFF (not recognized "
                        "as being in a supported file format)")
    assert "a_rather_long_folder_name" not in msg


def test_a_csv_that_is_not_text_is_named(synthetic_root, tmp_path):
    tree = shutil.copytree(synthetic_root, tmp_path / "s")
    (tree / "training_patches_38-cloud_nonempty.csv").write_bytes(bytes(range(256)))
    assert problems(tree).endswith(
        "training_patches_38-cloud_nonempty.csv: not a readable patch CSV (not UTF-8 text)")

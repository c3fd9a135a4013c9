"""Patch names and tree discovery: the 38-Cloud naming and folder conventions."""

from __future__ import annotations

import pytest

from cloudseg.data import (
    PatchId,
    find_layout,
    format_patch_name,
    parse_patch_name,
    scene_grid,
)
from cloudseg.data.layout import parse_csv_name
from cloudseg.errors import LayoutError

REAL = "red_patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1.TIF"


def test_real_name_parses_to_its_grid_position():
    band, pid = parse_patch_name(REAL)
    assert band == "red"
    assert pid == PatchId("LC08_L1TP_002053_20160520_20170324_01_T1", row=10, col=12, idx=192)
    # the scene is 21 x 20 patches: idx = (row - 1) * n_cols + col
    assert scene_grid(7761, 7601) == (21, 20)
    assert (pid.row - 1) * 20 + pid.col == pid.idx


@pytest.mark.parametrize("band", ["red", "green", "blue", "nir", "gt"])
def test_name_round_trip(band):
    pid = PatchId("LC08_L1TP_100030_20200115_20200128_01_T1", 3, 7, 47)
    name = format_patch_name(band, pid)
    assert parse_patch_name(name) == (band, pid)
    assert parse_csv_name(pid.name) == pid


@pytest.mark.parametrize("bad", ["red_patch_1_1_by_1.TIF", "swir_patch_1_1_by_1_S.TIF",
                                 "red_patch_1_1_1_S.TIF", "red_patch_1_1_by_1_S.png"])
def test_bad_names_are_layout_errors_naming_the_file(bad):
    with pytest.raises(LayoutError, match=bad.replace(".", r"\.")):
        parse_patch_name(bad)


def test_missing_root_says_what_was_expected_where(tmp_path):
    with pytest.raises(LayoutError) as info:
        find_layout(tmp_path / "nope")
    msg = str(info.value)
    assert "\n" not in msg and "does not exist" in msg and "38-Cloud_training/train_" in msg


def test_a_folder_without_38cloud_folders_is_rejected_in_one_line(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(LayoutError) as info:
        find_layout(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_layout_finds_csvs_case_insensitively_and_95cloud_folders(tmp_path):
    for folder in ["38-Cloud_training/train_red", "38-Cloud_test/test_red",
                   "95-cloud_training_only_additional_to38-cloud/train_red_additional_to38cloud",
                   "38-Cloud_test/Entire_scene_gts"]:
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "38-Cloud_training/training_patches_38-cloud.csv").write_text("name\n")
    (tmp_path / "training_patches_38-Cloud_nonempty.csv").write_text("name\n")
    (tmp_path / "38-Cloud_test/test_patches_38-Cloud.csv").write_text("name\n")
    (tmp_path / "38-Cloud_test/Entire_scene_gts/edited_corrected_gts_SCENE_1.TIF").write_bytes(b"")
    layout = find_layout(tmp_path)
    assert [p.name for p in layout.train_csvs] == ["training_patches_38-cloud.csv"]
    assert [p.name for p in layout.nonempty_csvs] == ["training_patches_38-Cloud_nonempty.csv"]
    assert [p.name for p in layout.test_csvs] == ["test_patches_38-Cloud.csv"]
    assert [p.parent.name for p in layout.train_dirs["red"]] == [
        "38-Cloud_training", "95-cloud_training_only_additional_to38-cloud"]
    assert set(layout.scene_gts) == {"SCENE_1"}

"""`cloudseg synth / prepare / stats`: exit codes and one-line messages; the happy path end to
end on a tiny synthetic tree."""

from __future__ import annotations

import json

import pytest

from cloudseg.cli import main


@pytest.mark.parametrize("command", ["prepare", "stats"])
def test_missing_path_is_one_line_and_exit_2(command, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main([command, str(missing), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: data root")
    assert str(missing) in err and "does not exist" in err and "38-Cloud_training/train_" in err
    assert not (tmp_path / "c").exists()


def test_a_folder_that_is_not_38cloud_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["prepare", str(tmp_path), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no 38-Cloud folders" in err and str(tmp_path) in err


def test_a_broken_tree_lists_its_files_and_exits_2(tmp_path, capsys):
    (tmp_path / "38-Cloud_training" / "train_red").mkdir(parents=True)
    (tmp_path / "38-Cloud_training" / "train_red" / "readme.md").write_text("x")
    assert main(["prepare", str(tmp_path), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {tmp_path}: 5 problem(s) in the data tree: ")
    assert "; stray file 38-Cloud_training/train_red/readme.md" in err
    assert "missing folder 38-Cloud_training/train_gt/" in err
    assert not (tmp_path / "c").exists()


def test_synth_refuses_an_existing_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert main(["synth", str(tmp_path / "x")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_synth_prepare_stats_json(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    assert main(["synth", str(data), "--train-scenes", "2", "--test-scenes", "1",
                 "--scene-size", "300", "400", "--seed", "1"]) == 0
    assert "4 training and 2 test patches" in capsys.readouterr().out  # 1 x 2 patches each
    assert main(["prepare", str(data), "--cache", str(cache)]) == 0
    assert "cache ready: 4 patches from 2 scenes" in capsys.readouterr().out
    assert main(["stats", str(data), "--cache", str(cache), "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_patches"] == 4
    assert stats["background_pixels"] + stats["cloud_pixels"] + stats["nodata_pixels"] == 4 * 384**2
    assert set(stats["bands"]) == {"red", "green", "blue", "nir"}
    assert len(stats["plots"]) == 2
    assert main(["stats", str(data), "--cache", str(cache)]) == 0
    assert "pos_weight" in capsys.readouterr().out

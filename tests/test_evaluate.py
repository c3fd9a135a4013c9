"""The 38-Cloud evaluation protocol on hand-built scenes with hand-counted errors, and the
authors' published Cloud-Net table reproduced by the same per-scene mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudseg.cli import main
from cloudseg.metrics import Metrics
from cloudseg.scenes.evaluate import (
    EvaluationError,
    evaluate_scenes,
    mean_over_scenes,
    parse_threshold,
    read_scene_table,
    score_scene,
    write_scene_csv,
    write_summary_json,
)
from cloudseg.scenes.reference import load_reference, reference_path

CLOUDNET_CSV = reference_path("cloudnet")  # shipped with the package (Apache-2.0, see PROVENANCE)


def write_tif(path: Path, array: np.ndarray, **options: str) -> None:
    """A plain TIFF like the 38-Cloud files (no CRS); `nbits="1"` writes a 1-bit TIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype,
        **options,
    ) as dst:
        dst.write(array, 1)


@pytest.fixture
def scenes(tmp_path):
    """Scene A (50x70): top 20 rows cloud; 5 cloud pixels predicted at exactly 12/255 (not
    cloud: the threshold is strict) and 3 clear pixels at 13/255 (cloud).
    Scene B (40x40): top 10 rows cloud, all found; 100 clear pixels predicted at 200/255."""
    gt_dir, pred_dir = tmp_path / "gt" / "Entire_scene_gts", tmp_path / "pred"
    a = np.zeros((50, 70), np.uint8)
    a[:20] = 255
    pa = a.copy()
    pa[0, :5] = 12  # 5 FN
    pa[30, :3] = 13  # 3 FP
    b = np.zeros((40, 40), np.uint8)
    b[:10] = 255
    pb = b.copy()
    pb[20:25, :20] = 200  # 100 FP
    for name, gt, pred in (("SCENE_A", a, pa), ("SCENE_B", b, pb)):
        write_tif(gt_dir / f"edited_corrected_gts_{name}.TIF", gt)
        write_tif(pred_dir / f"{name}_prob.tif", pred)
    return pred_dir, tmp_path / "gt"


def test_hand_counted_per_scene_and_pooled(scenes):
    report = evaluate_scenes(*scenes)
    got = {s.scene: s.metrics for s in report.scenes}
    assert got["SCENE_A"] == Metrics(tp=1395, fp=3, fn=5, tn=2097)
    assert got["SCENE_B"] == Metrics(tp=400, fp=100, fn=0, tn=1100)
    a, b = got["SCENE_A"], got["SCENE_B"]
    assert a.iou == pytest.approx(1395 / 1403) and b.iou == pytest.approx(0.8)
    assert a.precision == pytest.approx(1395 / 1398) and a.recall == pytest.approx(1395 / 1400)
    assert a.specificity == pytest.approx(2097 / 2100) and a.accuracy == pytest.approx(3492 / 3500)
    assert b.specificity == pytest.approx(1100 / 1200) and b.accuracy == pytest.approx(1500 / 1600)
    mean = report.mean
    assert mean["iou"] == pytest.approx((1395 / 1403 + 0.8) / 2)
    assert mean["precision"] == pytest.approx((1395 / 1398 + 0.8) / 2)
    assert mean["recall"] == pytest.approx((1395 / 1400 + 1.0) / 2)
    pooled = report.pooled
    assert pooled == Metrics(1795, 103, 5, 3197)
    assert pooled.iou == pytest.approx(1795 / 1903)
    assert pooled.iou != pytest.approx(mean["iou"])  # the two protocols differ


def test_csv_and_summary_round_trip(scenes, tmp_path):
    report = evaluate_scenes(*scenes)
    rows = read_scene_table(write_scene_csv(report, tmp_path / "out" / "scenes.csv"))
    assert [s for s, _ in rows] == ["SCENE_A", "SCENE_B"]
    assert mean_over_scenes(r for _, r in rows)["iou"] == pytest.approx(
        report.mean["iou"], abs=1e-6
    )
    summary = json.loads(write_summary_json(report, tmp_path / "out" / "summary.json").read_text())
    assert summary["n_scenes"] == 2 and summary["headline"] == "per-scene"
    assert summary["per_scene_mean_percent"]["Jaccard"] == pytest.approx(100 * report.mean["iou"])
    assert summary["pooled_counts"] == {"tp": 1795, "fp": 103, "fn": 5, "tn": 3197}


def test_cloudnet_published_per_scene_mean_is_reproduced():
    rows = read_scene_table(CLOUDNET_CSV)
    assert len(rows) == 20
    mean = {k: round(100 * v, 2) for k, v in mean_over_scenes(r for _, r in rows).items()}
    assert mean == {
        "iou": 78.50,
        "precision": 91.24,
        "recall": 84.86,
        "specificity": 98.68,
        "accuracy": 96.49,
    }


def test_mean_accepts_metrics_and_published_rows_alike():
    m = Metrics(tp=8, fp=2, fn=2, tn=88)
    as_row = {k: getattr(m, k) for k in ("precision", "recall", "specificity", "iou", "accuracy")}
    assert mean_over_scenes([m, m]) == pytest.approx(mean_over_scenes([as_row, as_row]))


def test_missing_prediction_names_the_scene(scenes):
    pred_dir, gt_dir = scenes
    (pred_dir / "SCENE_B_prob.tif").unlink()
    with pytest.raises(EvaluationError, match=r"scene SCENE_B: no prediction"):
        evaluate_scenes(pred_dir, gt_dir)


def test_prediction_without_ground_truth_names_the_scene(scenes):
    pred_dir, gt_dir = scenes
    write_tif(pred_dir / "SCENE_C_prob.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(EvaluationError, match=r"scene SCENE_C: .* has no ground truth"):
        evaluate_scenes(pred_dir, gt_dir)


def test_size_mismatch_names_the_scene_and_sizes(scenes):
    pred_dir, gt_dir = scenes
    write_tif(pred_dir / "SCENE_A_prob.tif", np.zeros((48, 70), np.uint8))
    with pytest.raises(EvaluationError, match=r"scene SCENE_A: prediction is 48x70 .* is 50x70"):
        evaluate_scenes(pred_dir, gt_dir)


def test_float_predictions_and_threshold_parsing():
    gt = np.array([[255, 0], [255, 0]], np.uint8)
    pred = np.array([[0.9, 0.04], [0.047, 0.6]], np.float32)
    assert score_scene(pred, gt, parse_threshold("12/255")) == Metrics(tp=1, fp=1, fn=1, tn=1)
    assert parse_threshold("0.5") == 0.5
    for bad in ("x", "3/0", "1.5"):
        with pytest.raises(Exception, match="threshold"):
            parse_threshold(bad)


def test_cli_evaluate_writes_tables(scenes, tmp_path, capsys):
    pred_dir, gt_dir = scenes
    csv_path = tmp_path / "res.csv"
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "SCENE_A" in out and "pooled" in out.lower() and "mean over 2 scenes" in out.lower()
    assert len(read_scene_table(csv_path)) == 2
    assert json.loads(csv_path.with_suffix(".json").read_text())["n_scenes"] == 2


def test_cli_evaluate_missing_scene_exits_2_naming_it(scenes, capsys):
    pred_dir, gt_dir = scenes
    (pred_dir / "SCENE_A_prob.tif").unlink()
    assert main(["evaluate", str(pred_dir), str(gt_dir)]) == 2
    err = capsys.readouterr().err
    assert "SCENE_A" in err and "Traceback" not in err


def test_cli_evaluate_shows_the_bundles_threshold_beside_the_official_one(scenes, tmp_path,
                                                                          capsys):
    """Hand counts: at 12/255 scene A has 5 FN and 3 FP (IoU 1395/1403), at the bundle's 0.3
    the 3 FP at 13/255 are clear (IoU 1395/1400); scene B is 400/500 at both."""
    from cloudseg.config import parse_run_config
    from cloudseg.models import build_model
    from cloudseg.training.checkpoint import save_bundle

    config = parse_run_config({"model": {"name": "vanilla-unet", "base_width": 4},
                               "train": {"threshold": 0.3}})
    bundle = save_bundle(tmp_path / "bundle", build_model(config.model), config, {})
    pred_dir, gt_dir = scenes
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--bundle", str(bundle)]) == 0
    out = capsys.readouterr().out
    official = 100 * (1395 / 1403 + 400 / 500) / 2
    at_bundle = 100 * (1395 / 1400 + 400 / 500) / 2
    rows = [ln for ln in out.splitlines() if "0.047059" in ln or "0.300000 (bundle)" in ln]
    assert any(f"{official:.2f}" in ln for ln in rows if "0.047059" in ln), out
    assert any(f"{at_bundle:.2f}" in ln for ln in rows if "(bundle)" in ln), out


def test_shipped_cloudnet_table_has_the_20_test_scenes_and_its_provenance():
    ref = load_reference("cloudnet")
    assert len(ref.scenes) == 20 and all(s.startswith("LC08_L1TP_") for s in ref.scenes)
    provenance = (CLOUDNET_CSV.parent / "PROVENANCE.md").read_text()
    assert "Apache" in provenance and "SorourMo/38-Cloud" in provenance


def test_cli_compare_cloudnet_prints_ours_beside_theirs(tmp_path, capsys):
    """Two scenes carrying real test ids: per-scene Jaccard beside Cloud-Net's, and the means
    over the shared scenes."""
    ref = load_reference("cloudnet")
    ids = list(ref.scenes)[:2]
    gt = np.zeros((40, 40), np.uint8)
    gt[:10] = 255
    pred = gt.copy()
    pred[20:25, :20] = 200  # IoU 400/500
    for scene in ids:
        write_tif(tmp_path / "gt" / f"edited_corrected_gts_{scene}.TIF", gt)
        write_tif(tmp_path / "pred" / f"{scene}_prob.tif", pred)
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"),
                 "--compare", "cloudnet"]) == 0
    out = capsys.readouterr().out
    theirs = [100 * ref.scenes[s]["iou"] for s in ids]
    line = next(ln for ln in out.splitlines() if ids[0] in ln and "80.00" in ln)
    assert f"{theirs[0]:.2f}" in line and f"{80 - theirs[0]:+.2f}" in line, out
    mean = next(ln for ln in out.splitlines() if "mean over 2 scenes" in ln and "80.00" in ln)
    assert f"{sum(theirs) / 2:.2f}" in mean, out


MASK_GT = np.zeros((30, 30), np.uint8)
MASK_GT[:10] = 255  # 300 cloud pixels


def _mask_scene(tmp_path: Path, name: str, mask: np.ndarray, **options: str) -> tuple[Path, Path]:
    """A scene whose prediction finds the 300 cloud pixels and 30 more (IoU 300/330)."""
    write_tif(tmp_path / "gt" / "edited_corrected_gts_S1.TIF", MASK_GT)
    write_tif(tmp_path / "pred" / name, mask, **options)
    return tmp_path / "pred", tmp_path / "gt"


def _found(cloud: int) -> np.ndarray:
    mask = np.zeros((30, 30), np.uint8)
    mask[:11] = cloud
    return mask


@pytest.mark.parametrize(
    ("name", "cloud", "options", "flags"),
    [
        ("S1_mask.tif", 255, {}, []),  # cloudseg predict's mask, 0/255
        ("S1.TIF", 1, {}, []),  # an entire_masks file, 0/1
        ("S1.TIF", 255, {}, []),  # an entire_masks file, 0/255
        ("S1_prob.tif", 1, {"nbits": "1"}, []),  # 1-bit, whatever its name
        ("S1_prob.tif", 1, {}, ["--masks"]),  # 0/1 named as a probability map, declared
        ("S1_prob.tif", 255, {}, []),  # 0/255 as a probability map: 1.0 > 12/255
    ],
)
def test_binary_masks_are_scored_as_masks(tmp_path, capsys, name, cloud, options, flags):
    pred_dir, gt_dir = _mask_scene(tmp_path, name, _found(cloud), **options)
    report = evaluate_scenes(pred_dir, gt_dir, masks="--masks" in flags)
    assert report.scenes[0].metrics == Metrics(tp=300, fp=30, fn=0, tn=570)
    assert main(["evaluate", str(pred_dir), str(gt_dir), *flags]) == 0
    assert f"{100 * 300 / 330:.2f}" in capsys.readouterr().out


def test_zero_one_probability_map_is_refused_in_one_line(tmp_path, capsys):
    """Read as v/255, a 0/1 mask would be all clear (J 0): it is refused, naming the file."""
    pred_dir, gt_dir = _mask_scene(tmp_path, "S1_prob.tif", _found(1))
    assert main(["evaluate", str(pred_dir), str(gt_dir)]) == 2
    err = capsys.readouterr().err
    assert "S1_prob.tif" in err and "--masks" in err and len(err.strip().splitlines()) == 1


def test_masks_flag_refuses_a_probability_map(tmp_path, capsys):
    pred_dir, gt_dir = _mask_scene(tmp_path, "S1_prob.tif", _found(128))
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--masks"]) == 2
    assert "not a binary mask" in capsys.readouterr().err

"""Scenes scored the way the 38-Cloud benchmark scores them, checked against a reference written
here from the authors' `evaluation.m` facts (never from the production functions):

- a scene of H x W pixels is zero-padded around its centre and cut into ceil(H/384) x ceil(W/384)
  patches; `unzeropad` crops the stitched canvas at row floor((rows*384 - H)/2) and column
  floor((cols*384 - W)/2);
- a prediction is cloud where im2double(value) > 12/255 (uint8: value/255; float: the value);
- every pixel is scored, no-data margins included; per-scene figures are then averaged.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from cloudseg.cli import main
from cloudseg.config import TrainConfig
from cloudseg.data import write_band, write_synthetic
from cloudseg.scenes.evaluate import EvaluationError, evaluate_scenes
from cloudseg.scenes.grid import SceneGrid
from cloudseg.scenes.inference import WindowPredictor, predict_mosaic
from cloudseg.scenes.predict import predict_with_model

T = 12 / 255
SIZES = {"SCENE_A": (769, 1153), "SCENE_B": (900, 1100), "SCENE_C": (768, 384)}


def reference_scores(patches: dict, height: int, width: int, gt: np.ndarray) -> dict:
    """The authors' arithmetic: stitch, centred crop, > 12/255, per-scene figures (fractions)."""
    rows, cols = -(-height // 384), -(-width // 384)
    canvas = np.zeros((rows * 384, cols * 384))
    for (r, c), p in patches.items():
        canvas[(r - 1) * 384 : r * 384, (c - 1) * 384 : c * 384] = (
            p / 255.0 if p.dtype == np.uint8 else p
        )
    top, left = (rows * 384 - height) // 2, (cols * 384 - width) // 2
    pred = canvas[top : top + height, left : left + width] > T
    truth = gt > 0
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn, tn = np.sum(~pred & truth), np.sum(~pred & ~truth)
    return {
        "precision": tp / (tp + fp), "recall": tp / (tp + fn), "specificity": tn / (tn + fp),
        "iou": tp / (tp + fp + fn), "accuracy": (tp + tn) / (tp + fp + fn + tn),
    }


def _patch_set(rng, height, width, dtype):
    """Random per-patch predictions whose values crowd the threshold from both sides."""
    rows, cols = -(-height // 384), -(-width // 384)
    out = {}
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            if dtype == np.uint8:
                out[r, c] = rng.choice(np.array([0, 11, 12, 13, 14, 200, 255], np.uint8),
                                       (384, 384))
            else:
                near = T + rng.choice([-1e-7, -1e-8, 1e-8, 1e-7, 0.3, -0.04], (384, 384))
                out[r, c] = np.clip(near, 0, 1).astype(np.float32)
    return out


def _write_patches(folder: Path, scene: str, patches: dict, cols: int, prefix="pred_") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (r, c), p in patches.items():
        name = f"{prefix}patch_{(r - 1) * cols + c}_{r}_by_{c}_{scene}.TIF"
        with rasterio.open(folder / name, "w", driver="GTiff", width=384, height=384, count=1,
                           dtype=p.dtype.name) as dst:
            dst.write(p, 1)


def _write_gts(folder: Path, rng) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    gts = {}
    for scene, (h, w) in SIZES.items():
        gts[scene] = np.where(rng.random((h, w)) < 0.4, 255, 0).astype(np.uint8)
        write_band(folder / f"edited_corrected_gts_{scene}.TIF", gts[scene])
    return gts


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_per_patch_predictions_score_as_the_authors_script(tmp_path, dtype):
    rng = np.random.default_rng(1)
    gts = _write_gts(tmp_path / "Entire_scene_gts", rng)
    expected = []
    for scene, (h, w) in SIZES.items():
        patches = _patch_set(rng, h, w, dtype)
        _write_patches(tmp_path / "pred", scene, patches, -(-w // 384))
        expected.append(reference_scores(patches, h, w, gts[scene]))
    report = evaluate_scenes(tmp_path / "pred", tmp_path)
    for key in expected[0]:
        want = float(np.mean([e[key] for e in expected]))
        assert report.mean[key] == pytest.approx(want, abs=1e-6)
        assert abs(report.mean[key] - want) < 1e-12


def test_values_at_the_threshold_fall_where_the_script_puts_them(tmp_path):
    """uint8 11, 12 → clear and 13 → cloud; floats just below / at 12/255 → clear, just above
    → cloud; in one-patch scenes of both input forms."""
    (tmp_path / "gts").mkdir()
    write_band(tmp_path / "gts" / "edited_corrected_gts_S.TIF", np.full((384, 384), 255, np.uint8))
    cases = {
        np.uint8: ([11, 12, 13], [False, False, True]),
        np.float32: ([np.nextafter(np.float32(T), np.float32(0)), np.float32(T),
                      np.nextafter(np.float32(T), np.float32(1))], None),
    }
    for dtype, (values, cloud) in cases.items():
        if cloud is None:  # Matlab compares double(single(v)) > 12/255: exact arithmetic
            cloud = [Fraction(float(v)) > Fraction(12, 255) for v in values]
        patch = np.zeros((384, 384), dtype)
        patch[:, :128], patch[:, 128:256], patch[:, 256:] = values
        pred = tmp_path / f"pred_{np.dtype(dtype).name}"
        _write_patches(pred, "S", {(1, 1): patch}, 1)
        tp = evaluate_scenes(pred, tmp_path / "gts").scenes[0].metrics.tp
        assert tp == 384 * 128 * sum(cloud), (dtype, values)


def test_missing_patch_and_wrong_grid_name_the_scene(tmp_path):
    rng = np.random.default_rng(0)
    _write_gts(tmp_path / "gts", rng)
    for scene, (h, w) in SIZES.items():
        patches = _patch_set(rng, h, w, np.uint8)
        if scene == "SCENE_B":
            del patches[2, 3]
        _write_patches(tmp_path / "pred", scene, patches, -(-w // 384))
    with pytest.raises(EvaluationError, match=r"SCENE_B: 1 of 9 patch predictions missing.*2_by_3"):
        evaluate_scenes(tmp_path / "pred", tmp_path / "gts")


def test_grid_offsets_match_the_published_example():
    """A 7761 x 7601 Landsat scene: 21 x 20 patches, the scene at (151, 39) on the canvas."""
    grid = SceneGrid.of_scene(7761, 7601)
    assert (grid.rows, grid.cols) == (21, 20) and grid.offset == (151, 39)


class LogitField(torch.nn.Module):
    """Probabilities crowding 12/255 on both sides, varying with the bands (position-dependent)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.mul_(1e-5)
            self.conv.bias.fill_(float(np.log(T / (1 - T))))

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("odd") / "s", train_scenes=1, test_scenes=2,
                           scene_size=(769, 1153), seed=3)


def test_predict_then_evaluate_equals_thresholding_the_float_output(odd_root, tmp_path):
    """What predict stores loses nothing at 12/255: the counts equal those of the float output
    thresholded directly, cropped with the reference offsets, every pixel (no-data) included."""
    from cloudseg.data import BANDS, find_layout, index_dataset, read_band

    model, cfg = LogitField(), TrainConfig(device="cpu")
    report = evaluate_scenes(
        predict_with_model(model, cfg, odd_root, tmp_path / "out", device="cpu").scenes[0]
        .prob_path.parent, odd_root)
    h, w = 769, 1153
    top, left = (3 * 384 - h) // 2, (4 * 384 - w) // 2
    gts = find_layout(odd_root).scene_gts
    near = 0
    for result in report.scenes:
        recs = [r for r in index_dataset(odd_root, "test") if r.id.scene == result.scene]
        canvas = np.zeros((4, 3 * 384, 4 * 384), np.uint16)
        for r in recs:
            y, x = (r.id.row - 1) * 384, (r.id.col - 1) * 384
            canvas[:, y : y + 384, x : x + 384] = [read_band(r.files[b]) for b in BANDS]
        prob = predict_mosaic(WindowPredictor(model, cfg, device="cpu"), canvas)
        prob = prob[top : top + h, left : left + w]
        with rasterio.open(gts[result.scene]) as src:
            truth = src.read(1) > 0
        pred = prob.astype(np.float64) > T
        m = result.metrics
        assert (m.tp, m.fp, m.fn, m.tn) == (
            np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth),
            np.sum(~pred & ~truth))
        near += int(np.sum((prob > T) & (prob <= 12.5 / 255)))
    assert near > 100  # the pixels that rounding to uint8 would have flipped were there



def test_footprint_scoring_is_a_labelled_option(odd_root, tmp_path, capsys):
    """The official table scores every pixel; --footprint scores only pixels with data, and
    says so in the table and the summary JSON."""
    import json

    from cloudseg.data import BANDS, find_layout, index_dataset, read_band

    out = tmp_path / "out"
    predict_with_model(LogitField(), TrainConfig(device="cpu"), odd_root, out, device="cpu")
    assert main(["evaluate", str(out), str(odd_root), "--footprint", "--csv",
                 str(tmp_path / "fp.csv")]) == 0
    assert "footprint only" in capsys.readouterr().out
    summary = json.loads((tmp_path / "fp.json").read_text())
    assert summary["scored"].startswith("footprint only")
    h, w = 769, 1153
    top, left = (3 * 384 - h) // 2, (4 * 384 - w) // 2
    full = evaluate_scenes(out, odd_root)
    inside = evaluate_scenes(out, odd_root, footprint=True)
    for a, b in zip(full.scenes, inside.scenes, strict=True):
        canvas = np.zeros((3 * 384, 4 * 384), bool)
        for r in index_dataset(odd_root, "test"):
            if r.id.scene == a.scene:
                y, x = (r.id.row - 1) * 384, (r.id.col - 1) * 384
                canvas[y : y + 384, x : x + 384] = np.any(
                    [read_band(r.files[band]) for band in BANDS], axis=0)
        data = canvas[top : top + h, left : left + w]
        ma, mb = a.metrics, b.metrics
        assert ma.tp + ma.fp + ma.fn + ma.tn == h * w
        assert mb.tp + mb.fp + mb.fn + mb.tn == int(data.sum()) < h * w
    assert set(find_layout(odd_root).scene_gts) == {s.scene for s in full.scenes}

"""Whole-scene prediction: seams with and without the blended sliding window, GeoTIFF output
(format, crop to the scene size, georeference kept), bundles end to end, scene-level metrics."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags

from cloudseg.cli import main
from cloudseg.config import ModelConfig, RunConfig, TrainConfig
from cloudseg.data import BANDS, find_layout, index_dataset
from cloudseg.metrics import confusion_counts
from cloudseg.scenes.evaluate import evaluate_scenes
from cloudseg.scenes.geotiff import (
    mask_product,
    probability_product,
    to_uint8_mask,
    to_uint8_probability,
    write_uint8,
)
from cloudseg.scenes.inference import WindowPredictor, predict_mosaic
from cloudseg.scenes.metrics import SceneMeter
from cloudseg.scenes.predict import predict_with_model
from cloudseg.scenes.stitch import blend_weights, stitch, window_offsets
from cloudseg.training.checkpoint import save_bundle
from tests.cog_check import validate_cog

K = 9  # the box filter's side: it sees zero padding within K//2 pixels of a window border


class BoxFilter(torch.nn.Module):
    """A model-like predictor that degrades near its input's borders, as zero-padded CNNs do:
    cloud where the 9x9 mean of band 1 is bright; the padding darkens that mean at the edges."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 1, K, padding=K // 2, bias=True)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 50.0 / (K * K)
            self.conv.bias.fill_(-50.0 * 25000 / 65535)  # needs 3/4 of the box bright

    def forward(self, x):
        return self.conv(x)


def cloudy_scene(size: int = 768) -> tuple[np.ndarray, np.ndarray]:
    """Bands (4, H, W) uint16 and truth: mostly cloud (30000 DN) with clear stripes (5000 DN)."""
    yy, xx = np.mgrid[:size, :size]
    truth = ((xx // 100) % 3 != 1) & ((yy // 90) % 4 != 1)  # cloud across x, y = 384
    band = np.where(truth, 30000, 5000).astype(np.uint16)
    return np.stack([band] * 4), truth


def seam_error(prob: np.ndarray, truth: np.ndarray, width: int = K // 2) -> float:
    """Error rate on pixels within `width` of an interior 384-pixel patch boundary."""
    band = np.zeros(truth.shape, bool)
    for edge in range(384, truth.shape[0], 384):
        band[edge - width : edge + width] = True
        band[:, edge - width : edge + width] = True
    return float(((prob > 0.5) != truth)[band].mean())


def test_overlap_blending_removes_seams():
    image, truth = cloudy_scene()
    predictor = WindowPredictor(BoxFilter(), TrainConfig(device="cpu"), device="cpu", batch_size=4)
    plain = seam_error(predict_mosaic(predictor, image, overlap=0), truth)
    blended = seam_error(predict_mosaic(predictor, image, overlap=64), truth)
    assert plain > 0.1  # the naive grid is wrong along every patch edge
    assert blended < plain / 10
    print(f"seam error: overlap 0 → {plain:.3f}, overlap 64 → {blended:.4f}")


def test_overlap_zero_is_the_patch_grid_and_weights_cover():
    assert window_offsets(768, 384, 0) == [0, 384]
    assert window_offsets(800, 384, 64) == [0, 320, 416]  # last window flush with the end
    w = blend_weights(384, 64)
    assert w.min() > 0 and w[192, 192] == 1 and w[0, 0] < w[0, 192] < w[192, 192]
    patches = [(r, c, np.full((384, 384), 10 * r + c, np.uint8)) for r in (1, 2) for c in (1, 2)]
    scene = stitch(patches, 2, 2, shape=(500, 700))
    assert scene.shape == (500, 700) and scene[0, 0] == 11 and scene[499, 699] == 22


def test_tta_is_the_mean_over_the_eight_views():
    """With a model that is not symmetric, TTA must equal the average of its predictions on the
    8 flips/rotations mapped back (computed here view by view), and differ from one pass."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 1, 5, padding=2)  # a random, lopsided kernel
    image, _ = cloudy_scene(384)
    cfg = TrainConfig(device="cpu")
    plain = WindowPredictor(model, cfg, device="cpu")(image[None])[0]
    tta = WindowPredictor(model, cfg, device="cpu", tta=True)(image[None])[0]
    views = []
    for flip in (False, True):
        for k in range(4):
            view = np.rot90(image[..., ::-1] if flip else image, k, axes=(-2, -1))
            p = WindowPredictor(model, cfg, device="cpu")(np.ascontiguousarray(view)[None])[0]
            p = np.rot90(p, -k)
            views.append(p[..., ::-1] if flip else p)
    np.testing.assert_allclose(tta, np.mean(views, axis=0), atol=1e-5)
    assert np.abs(tta - plain).max() > 1e-3  # the views really differ: TTA did something


def test_predict_writes_cropped_compressed_tiled_uint8(synthetic_root, tmp_path):
    out = tmp_path / "pred"
    result = predict_with_model(
        BoxFilter(), TrainConfig(device="cpu"), synthetic_root, out, device="cpu", batch_size=4
    )
    gts = find_layout(synthetic_root).scene_gts
    assert {s.scene for s in result.scenes} == set(gts) and result.patches == 8
    for s in result.scenes:
        for path in (s.prob_path, s.mask_path):
            with rasterio.open(path) as src:
                profile = src.profile
                assert (src.height, src.width) == (600, 700) == s.shape  # cropped from 768x768
                assert src.dtypes == ("uint8",) and src.compression.name.lower() == "deflate"
                assert profile["tiled"] and src.block_shapes == [(256, 256)]
                assert src.crs is None
                assert src.overviews(1) and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert src.mask_flag_enums == ([MaskFlags.per_dataset],)  # the footprint
                assert src.nodata is None
                assert validate_cog(path) == ([], [])
                values = set(np.unique(src.read(1)))
        assert values <= {0, 255}  # the mask
        with rasterio.open(s.mask_path) as src:
            assert float(src.tags()["CLOUDSEG_THRESHOLD"]) == TrainConfig().threshold
            assert src.colormap(1)[255] == (255, 255, 255, 255)
            assert src.descriptions[0].startswith("cloud mask")
        with rasterio.open(s.prob_path) as src:
            assert "ceil(255 * p)" in src.tags()["CLOUDSEG_SCALE"]
            assert src.descriptions[0].startswith("cloud probability")
    report = evaluate_scenes(out, synthetic_root)  # what predict writes is what evaluate reads
    assert len(report.scenes) == 2 and 0 < report.mean["iou"] <= 1


def test_a_2400_px_scene_is_a_valid_cog_without_warnings(tmp_path):
    """The checks of GDAL's COG validator (tests/cog_check.py) on both products of a scene the
    size the validator's "over 512 px: tiles and overviews" rules are about."""
    rng = np.random.default_rng(0)
    prob = rng.random((2400, 2400), dtype=np.float32)
    footprint = np.ones(prob.shape, bool)
    footprint[:, :300] = False  # a no-data margin
    for name, array, product in (
        ("prob", to_uint8_probability(prob), probability_product()),
        ("mask", to_uint8_mask(prob, 12 / 255), mask_product(12 / 255)),
    ):
        path = write_uint8(tmp_path / f"{name}.tif", array, footprint=footprint, product=product)
        assert validate_cog(path) == ([], []), name
        with rasterio.open(path) as src:
            assert src.overviews(1) == [2, 4, 8, 16]
            assert np.array_equal(src.read(1), array)
            assert not src.read_masks(1)[:, :300].any() and src.read_masks(1)[:, 300:].all()
    with rasterio.open(tmp_path / "mask.tif") as src:
        assert float(src.tags()["CLOUDSEG_THRESHOLD"]) == 12 / 255


def test_georeferenced_sources_keep_crs_and_transform(synthetic_root, tmp_path):
    root = tmp_path / "geo"
    shutil.copytree(synthetic_root / "38-Cloud_test", root / "38-Cloud_test")
    crs = CRS.from_epsg(32633)
    gts = find_layout(root).scene_gts
    scene_a, scene_b = sorted(gts)
    # Scene A: a georeferenced whole-scene gt.
    gt_transform = Affine(30, 0, 500000, 0, -30, 4200000)
    _georeference(gts[scene_a], crs, gt_transform)
    # Scene B: plain gt, georeferenced patches; the scene origin is derived from patch (r, c).
    origin = Affine(30, 0, 300000, 0, -30, 5000000)
    for rec in index_dataset(root, split="test"):
        if rec.id.scene == scene_b:
            shift = Affine.translation((rec.id.col - 1) * 384, (rec.id.row - 1) * 384)
            for band in BANDS:
                _georeference(rec.files[band], crs, origin @ shift)
    result = predict_with_model(
        BoxFilter(), TrainConfig(device="cpu"), root, tmp_path / "out", device="cpu"
    )
    # 38-Cloud pads around the centre: the 600x700 scene starts at row (768 - 600) // 2 = 84,
    # column (768 - 700) // 2 = 34 of its 2x2 grid's canvas.
    expected = {scene_a: gt_transform, scene_b: origin @ Affine.translation(34, 84)}
    for s in result.scenes:
        assert s.georeferenced
        with rasterio.open(s.prob_path) as src:
            assert src.crs == crs and src.transform.almost_equals(expected[s.scene])


def _georeference(path, crs, transform) -> None:
    with rasterio.open(path) as src:
        data, profile = src.read(1), src.profile
    profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def test_predict_scenes_from_a_bundle_and_cli(synthetic_root, tmp_path, capsys):
    from cloudseg.models import build_model

    torch.manual_seed(0)
    config = RunConfig(
        model=ModelConfig(name="vanilla-unet", base_width=4), train=TrainConfig(device="cpu")
    )
    bundle = save_bundle(tmp_path / "bundle", build_model(config.model), config)
    out = tmp_path / "cli"
    argv = ["predict", str(bundle), str(synthetic_root), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--batch-size", "8"]) == 0  # cloudseg predict → predict_scenes
    assert "8 patches" in capsys.readouterr().out
    for scene in find_layout(synthetic_root).scene_gts:
        for suffix in ("_prob.tif", "_mask.tif"):
            with rasterio.open(out / f"{scene}{suffix}") as src:
                assert src.shape == (600, 700)
    one = tmp_path / "one-reader"
    assert main([*argv[:4], str(one), *argv[5:], "--workers", "1"]) == 0
    for path in out.glob("*.tif"):  # the reader count never changes the pixels
        with rasterio.open(path) as a, rasterio.open(one / path.name) as b:
            assert np.array_equal(a.read(), b.read())
    assert main([*argv, "--overlap", "384"]) == 2
    assert "overlap" in capsys.readouterr().err


def test_scene_meter_equals_stitch_then_count():
    rng = np.random.default_rng(0)
    pred = rng.random((8, 1, 16, 16)) > 0.5
    target = rng.random((8, 1, 16, 16)) > 0.3
    scenes = ["a"] * 4 + ["b"] * 4
    meter = SceneMeter()
    meter.update(scenes[:3], torch.from_numpy(pred[:3]), torch.from_numpy(target[:3]))
    meter.update(scenes[3:], pred[3:], target[3:])  # torch and numpy batches alike
    for name, sl in (("a", slice(0, 4)), ("b", slice(4, 8))):
        cells = [(i // 2 + 1, i % 2 + 1) for i in range(4)]
        p = stitch(
            [(r, c, x[0]) for (r, c), x in zip(cells, pred[sl], strict=True)], 2, 2, patch=16
        )
        t = stitch(
            [(r, c, x[0]) for (r, c), x in zip(cells, target[sl], strict=True)], 2, 2, patch=16
        )
        assert meter.per_scene[name] == confusion_counts(p, t)
    ious = [meter.per_scene[s].iou for s in "ab"]
    assert meter.iou == pytest.approx(sum(ious) / 2)


def _read_tifs(folder) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as src:
            out[path.name] = src.read(1)
    return out


def test_parallel_reading_is_bit_identical_to_one_reader_and_to_predict_mosaic(
    synthetic_root, tmp_path
):
    """Readers fill batches in any order and the model runs ahead of the blending, yet the
    files equal those of one reader thread and of the in-memory `predict_mosaic` path."""
    from cloudseg.data import read_band
    from cloudseg.scenes.geotiff import to_uint8_probability
    from cloudseg.scenes.stitch import crop

    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 1, 5, padding=2)  # random weights: graded, position-dependent
    cfg = TrainConfig(device="cpu")
    kw = {"device": "cpu", "batch_size": 3, "overlap": 64}  # 9 windows/scene, across patches
    many = predict_with_model(model, cfg, synthetic_root, tmp_path / "w4", workers=4, **kw)
    one = predict_with_model(model, cfg, synthetic_root, tmp_path / "w1", workers=1, **kw)
    a, b = _read_tifs(tmp_path / "w4"), _read_tifs(tmp_path / "w1")
    assert len(a) == 4 and a.keys() == b.keys() and many.windows == one.windows == 18
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    by_scene: dict[str, list] = {}
    for rec in index_dataset(synthetic_root, split="test"):
        by_scene.setdefault(rec.id.scene, []).append(rec)
    predictor = WindowPredictor(model, cfg, device="cpu", batch_size=3)
    for scene, records in by_scene.items():
        bands = [
            (r.id.row, r.id.col, np.stack([read_band(r.files[band]) for band in BANDS]))
            for r in records
        ]
        prob = predict_mosaic(predictor, stitch(bands, 2, 2), overlap=64, batch_size=3)
        expected = to_uint8_probability(crop(prob, (600, 700)))
        np.testing.assert_array_equal(a[f"{scene}_prob.tif"], expected)


def test_background_read_and_write_errors_name_the_file(synthetic_root, tmp_path):
    """A band that fails to decode in a reader thread, and a GeoTIFF that cannot be written in
    the writer thread, surface in the caller as the library's errors naming the file."""
    from cloudseg.errors import CloudsegError, LayoutError

    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "38-Cloud_test", root / "38-Cloud_test")
    records = index_dataset(root, split="test")
    bad = records[-1].files["nir"]  # the last band: indexing reads only the first bands
    with rasterio.open(bad) as src:
        data, profile = src.read(1), src.profile
    profile.update(compress="deflate", tiled=False, blockysize=16)
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data, 1)
    with rasterio.open(bad) as src:  # garble the first strip's deflate stream, keep its size
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    raw = bytearray(bad.read_bytes())
    raw[offset + 2 : offset + size - 2] = bytes(range(256)) * ((size - 4) // 256) + bytes(
        (size - 4) % 256
    )
    bad.write_bytes(bytes(raw))
    cfg = TrainConfig(device="cpu")
    with pytest.raises(LayoutError, match=bad.name):
        predict_with_model(BoxFilter(), cfg, root, tmp_path / "out", device="cpu", workers=2)

    first = sorted(find_layout(synthetic_root).scene_gts)[0]
    out = tmp_path / "blocked"  # the first scene's mask path is a folder: fails mid-run
    (out / f"{first}_mask.tif.tmp").mkdir(parents=True)
    with pytest.raises(CloudsegError, match=f"{first}_mask.tif"):
        predict_with_model(BoxFilter(), cfg, synthetic_root, out, device="cpu", workers=2)
    out_file = tmp_path / "not-a-folder"
    out_file.write_text("")
    with pytest.raises(CloudsegError, match="not-a-folder"):
        predict_with_model(BoxFilter(), cfg, synthetic_root, out_file, device="cpu")


def test_the_blend_canvas_is_one_array_and_averages_exactly_as_two():
    """One scene-sized accumulator (the weight totals are a row vector times a column vector)
    gives the weighted average a weight canvas gives, and a missing window is refused.
    """
    from cloudseg.errors import LayoutError
    from cloudseg.scenes.stitch import BlendCanvas, window_spots

    rng = np.random.default_rng(0)
    shape, window, overlap = (200, 230), 64, 24
    spots = window_spots(shape, window, overlap)
    preds = rng.random((len(spots), window, window), dtype=np.float32)
    weights = blend_weights(window, overlap)
    total, norm = np.zeros(shape), np.zeros(shape)
    canvas = BlendCanvas(shape, window, overlap)
    for (y, x), p in zip(spots, preds, strict=True):
        total[y : y + window, x : x + window] += p * weights
        norm[y : y + window, x : x + window] += weights
        canvas.add(y, x, p)
    arrays = [v for v in vars(canvas).values() if isinstance(v, np.ndarray) and v.ndim == 2]
    assert [a.shape for a in arrays] == [(window, window), shape]  # weights + one canvas
    np.testing.assert_allclose(canvas.result(), total / norm, rtol=1e-5)
    short = BlendCanvas(shape, window, overlap)
    short.add(*spots[0], preds[0])
    with pytest.raises(LayoutError, match="1 of"):
        short.result()

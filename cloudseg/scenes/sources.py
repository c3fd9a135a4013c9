"""Where `cloudseg evaluate` finds a scene's prediction: one scene GeoTIFF, or per-patch files.

Two forms are accepted, as the authors' `evaluation.m` and users of any other network have them:
- `<scene>_prob.tif`, what `cloudseg predict` writes (already cropped to the scene);
- per-patch predictions named like the test patches, `*patch_<idx>_<row>_by_<col>_<scene>.TIF`
  (any prefix), float in [0, 1] or uint8 0-255. They are stitched by (row, col) and the scene is
  cropped out of the middle of the grid (`SceneGrid`: 38-Cloud's centred padding).

Binary masks are accepted too, and never scored as probabilities: a whole-scene
`<scene>_mask.tif` (cloudseg predict's 0/255 mask) or `<scene>.TIF` (as the authors' Matlab and
Python evaluations write their `entire_masks`), a 1-bit TIFF anywhere, or any input with
`masks=True` is read as cloud where the value > 0, and must hold only 0/1 or 0/255. A
probability input (uint8) that holds only 0 and 1 is refused: read as v/255 it would score as
all clear at any threshold, which is what a 0/1 mask looks like.

A source turns its prediction into a boolean cloud map at a threshold right away (`binary`), so
per-patch files of different dtypes stitch without a lossy common type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudseg.errors import CloudsegError
from cloudseg.scenes.geotiff import (
    MASK_VALUES,
    PROBABILITY_VALUES,
    VALUES_TAG,
    above,
    open_raster,
)
from cloudseg.scenes.grid import SceneGrid

PROB_SUFFIX = "_prob.tif"  # what `cloudseg predict` writes: uint8 ceil(255·p)
MASK_SUFFIX = "_mask.tif"  # cloudseg predict's binary mask (0/255), used without a _prob.tif
GT_NAME = re.compile(r"^edited_corrected_gts_", re.IGNORECASE)
SCENE_NAME = re.compile(r"^(?P<scene>[A-Za-z0-9_]+)\.tiff?$", re.IGNORECASE)
MASKS_HINT = ("pass --masks (cloudseg.evaluate_scenes(masks=True)) to read it as a binary "
              "mask, cloud where > 0")
PATCH_FILE = re.compile(
    r"^.*?patch_(?P<idx>\d+)_(?P<row>\d+)_by_(?P<col>\d+)_(?P<scene>[A-Za-z0-9_]+)\.tiff?$",
    re.IGNORECASE,
)


class EvaluationError(CloudsegError):
    """Predictions and ground truths do not line up: the message names every scene at fault."""


def binarise(prediction: np.ndarray, threshold: float, *, mask: bool = False,
             strict: bool = True) -> np.ndarray:
    """`p > threshold` where p = value/255 for uint8 images (Matlab's im2double), the value
    itself for floats (compared in float64: `geotiff.above`). With `mask`, the input is a
    binary mask (0/1 or 0/255): cloud where > 0, the threshold unused; other values are refused.
    A uint8 probability map holding only 0 and 1 is refused (a 0/1 mask would score all clear),
    unless not `strict` (a file that says it holds probabilities: `cloudseg predict`'s).
    """
    if mask:
        values = np.unique(prediction)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (" ..." if len(values) > 6 else "")
            raise EvaluationError(f"not a binary mask: values {shown} (expected 0/1 or 0/255)")
        return prediction > 0
    if prediction.dtype == np.uint8:
        if strict and prediction.size and int(prediction.max()) == 1:
            raise EvaluationError(
                "uint8 prediction holds only 0 and 1: read as probability v/255 every pixel is "
                f"clear at any threshold; if it is a 0/1 mask, {MASKS_HINT}")
        lut = np.arange(256) / 255 > threshold  # exact `v/255 > t`, without a float copy
        return lut[prediction]
    if not np.issubdtype(prediction.dtype, np.floating):
        raise EvaluationError(f"prediction dtype {prediction.dtype}: expected uint8 or float")
    return above(prediction, threshold)


def _kind(path: Path) -> tuple[bool, bool]:
    """(a mask, declared probabilities): a 1-bit TIFF is a mask; `cloudseg predict`'s
    probability GeoTIFFs say what they hold (`geotiff.VALUES_TAG`).
    """
    with open_raster(path) as src:
        one_bit = src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "1"
        values = src.tags().get(VALUES_TAG, "")
    return one_bit or values == MASK_VALUES, values == PROBABILITY_VALUES


def _binary(path: Path, threshold: float, mask: bool) -> np.ndarray:
    """`binarise` of the file at `path`, as its kind says. Errors name the file."""
    is_mask, declared = _kind(path)
    try:
        return binarise(_read(path), threshold, mask=mask or is_mask, strict=not declared)
    except EvaluationError as err:
        raise EvaluationError(f"{path}: {err}") from None


def _read(path: Path) -> np.ndarray:
    with open_raster(path) as src:
        return src.read(1)


@dataclass(frozen=True)
class SceneFile:
    """A whole-scene prediction GeoTIFF (`cloudseg predict` output)."""

    scene: str
    path: Path
    mask: bool = False  # a binary mask file (cloud where > 0), not a probability map

    def problem(self, shape: tuple[int, int]) -> str | None:
        """Why the file cannot be scored against a gt of `shape`, or None."""
        with open_raster(self.path) as src:
            got = (src.height, src.width)
        if got != shape:
            return (f"scene {self.scene}: prediction is {got[0]}x{got[1]} but the ground truth "
                    f"is {shape[0]}x{shape[1]} (height x width)")
        return None

    def binary(self, shape: tuple[int, int], threshold: float, masks: bool = False
               ) -> np.ndarray:
        """Cloud where the prediction exceeds `threshold` (compared as `binarise` does); a
        mask (this file's kind or `masks`) is cloud where > 0.
        """
        return _binary(self.path, threshold, masks or self.mask)

    def footprint(self) -> np.ndarray:
        """The file's mask band (True = inside the scene footprint)."""
        from rasterio.enums import MaskFlags

        with open_raster(self.path) as src:
            if MaskFlags.per_dataset not in src.mask_flag_enums[0]:
                raise EvaluationError(
                    f"{self.path}: no footprint mask band; footprint scoring needs the scene "
                    "GeoTIFFs that `cloudseg predict` writes")
            return src.dataset_mask() > 0


@dataclass(frozen=True)
class PatchFiles:
    """A scene's per-patch predictions: (row, col) → file."""

    scene: str
    files: dict[tuple[int, int], Path] = field(default_factory=dict)
    indices: dict[tuple[int, int], int] = field(default_factory=dict)

    def grid(self, shape: tuple[int, int]) -> SceneGrid:
        """The 38-Cloud patch grid of a scene of `shape` (height, width)."""
        return SceneGrid.of_scene(*shape)

    def problem(self, shape: tuple[int, int]) -> str | None:
        """Why the patches cannot be scored against a gt of `shape` (cells missing or stray)."""
        grid = self.grid(shape)
        cells = [(r, c) for r in range(1, grid.rows + 1) for c in range(1, grid.cols + 1)]
        missing = [f"{r}_by_{c}" for r, c in cells if (r, c) not in self.files]
        stray = sorted(self.files.keys() - set(cells))
        if missing:
            shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
            return (f"scene {self.scene}: {len(missing)} of {len(cells)} patch predictions "
                    f"missing from its {grid.rows}x{grid.cols} grid: {shown}")
        if stray:
            return (f"scene {self.scene}: patch {stray[0][0]}_by_{stray[0][1]} lies outside the "
                    f"{grid.rows}x{grid.cols} grid of its {shape[0]}x{shape[1]} ground truth")
        bad = [cell for cell, idx in self.indices.items()
               if idx != (cell[0] - 1) * grid.cols + cell[1]]
        if bad:
            return (f"{self.files[bad[0]]}: index {self.indices[bad[0]]} does not match row "
                    f"{bad[0][0]}, col {bad[0][1]} of a {grid.cols}-column grid")
        return None

    def binary(self, shape: tuple[int, int], threshold: float, masks: bool = False
               ) -> np.ndarray:
        """Cloud where the prediction exceeds `threshold` (or > 0 for masks), stitched and
        cropped to the scene.
        """
        grid = self.grid(shape)
        canvas = np.zeros(grid.padded, bool)
        for (row, col), path in self.files.items():
            patch = _read(path)
            if patch.shape != (grid.patch, grid.patch):
                raise EvaluationError(f"{path}: patch is {patch.shape[0]}x{patch.shape[1]}, "
                                      f"expected {grid.patch}x{grid.patch}")
            is_mask, declared = _kind(path)
            try:
                cut = binarise(patch, threshold, mask=masks or is_mask, strict=not declared)
            except EvaluationError as err:
                raise EvaluationError(f"{path}: {err}") from None
            y, x = grid.patch_origin(row, col)
            canvas[y : y + grid.patch, x : x + grid.patch] = cut
        return grid.crop(canvas)

    def footprint(self) -> np.ndarray:
        """Per-patch files have no footprint: always an EvaluationError."""
        raise EvaluationError(
            f"scene {self.scene}: per-patch predictions carry no footprint; footprint scoring "
            "needs the scene GeoTIFFs that `cloudseg predict` writes")


Source = SceneFile | PatchFiles


def prediction_sources(pred_dir: str | Path) -> dict[str, Source]:
    """Scene → its prediction source in `pred_dir` (scene GeoTIFFs or per-patch files, not both)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder does not exist")
    scenes: dict[str, Source] = {}
    masks: dict[str, SceneFile] = {}
    patches: dict[str, PatchFiles] = {}
    for path in sorted(pred_dir.iterdir()):
        lower = path.name.lower()
        if lower.endswith(PROB_SUFFIX):
            scenes[path.name[: -len(PROB_SUFFIX)]] = SceneFile(path.name[: -len(PROB_SUFFIX)], path)
        elif m := PATCH_FILE.match(path.name):
            cell = (int(m["row"]), int(m["col"]))
            group = patches.setdefault(m["scene"], PatchFiles(m["scene"]))
            if cell in group.files:
                raise EvaluationError(f"{pred_dir}: two predictions for patch {cell[0]}_by_"
                                      f"{cell[1]} of {m['scene']}: {group.files[cell].name}, "
                                      f"{path.name}")
            group.files[cell], group.indices[cell] = path, int(m["idx"])
        elif lower.endswith(MASK_SUFFIX):
            scene = path.name[: -len(MASK_SUFFIX)]
            masks[scene] = SceneFile(scene, path, mask=True)
        elif (m := SCENE_NAME.match(path.name)) and not GT_NAME.match(path.name):
            masks.setdefault(m["scene"], SceneFile(m["scene"], path, mask=True))
    for scene, file in masks.items():  # a mask only where no probability map is given
        scenes.setdefault(scene, file)
    if scenes and patches:
        raise EvaluationError(f"{pred_dir}: holds both scene GeoTIFFs (*{PROB_SUFFIX} or "
                              "masks) and per-patch predictions; give one kind per folder")
    return {**scenes, **patches}

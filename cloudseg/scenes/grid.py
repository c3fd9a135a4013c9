"""THE scene grid: how 38-Cloud pads a scene and cuts it into 384-pixel patches, in one place.

The authors zero-pad each scene *around its centre* to a multiple of 384 and cut the padded
canvas into a row-major grid of patches named by (row, col), 1-based. Their `evaluation.m`
(`unzeropad`) undoes it by cropping the stitched canvas at row offset
floor((rows·384 − H)/2) and column offset floor((cols·384 − W)/2). Everything that stitches,
crops, georeferences, scores or synthesises scenes goes through `SceneGrid`, so there is one
offset in the code base, not one per module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.errors import LayoutError

PATCH = 384


@dataclass(frozen=True)
class SceneGrid:
    """A (height, width) scene on a rows × cols grid of `patch`-pixel patches, centred."""

    height: int
    width: int
    rows: int
    cols: int
    patch: int = PATCH

    @classmethod
    def of_scene(cls, height: int, width: int, patch: int = PATCH) -> SceneGrid:
        """The grid 38-Cloud cuts an (H, W) scene into: ceil(H/384) × ceil(W/384)."""
        if height < 1 or width < 1:
            raise LayoutError("scene grid", [f"scene size {height}x{width} is empty"])
        return cls(height, width, -(-height // patch), -(-width // patch), patch)

    @classmethod
    def fitted(cls, shape: tuple[int, int], rows: int, cols: int, scene: str = "scene",
               patch: int = PATCH) -> SceneGrid:
        """The grid of a scene whose size is known (its gt) and whose patches form rows × cols;
        a size that 38-Cloud would have cut into another grid is an error naming the scene.
        """
        grid = cls.of_scene(*shape, patch=patch)
        if (grid.rows, grid.cols) != (rows, cols):
            raise LayoutError(scene, [
                f"scene {scene}: its {shape[0]}x{shape[1]} size makes a {grid.rows}x{grid.cols} "
                f"grid of {patch}-pixel patches, but its patches form {rows}x{cols}"])
        return grid

    @classmethod
    def uncropped(cls, rows: int, cols: int, patch: int = PATCH) -> SceneGrid:
        """A grid whose scene size is unknown: the whole padded canvas is the scene."""
        return cls(rows * patch, cols * patch, rows, cols, patch)

    @property
    def padded(self) -> tuple[int, int]:
        """(height, width) of the padded canvas the patches tile."""
        return self.rows * self.patch, self.cols * self.patch

    @property
    def offset(self) -> tuple[int, int]:
        """(row, column) of the scene's top-left pixel on the padded canvas: centred."""
        pad_h, pad_w = self.padded
        return (pad_h - self.height) // 2, (pad_w - self.width) // 2

    def patch_origin(self, row: int, col: int) -> tuple[int, int]:
        """Canvas (y, x) of patch (row, col)'s top-left pixel (1-based row and col)."""
        return (row - 1) * self.patch, (col - 1) * self.patch

    def crop(self, canvas: np.ndarray) -> np.ndarray:
        """The scene out of a stitched (..., rows·384, cols·384) canvas (a view)."""
        if canvas.shape[-2:] != self.padded:
            raise LayoutError("crop", [
                f"canvas {canvas.shape[-2]}x{canvas.shape[-1]} is not the "
                f"{self.padded[0]}x{self.padded[1]} grid of a {self.height}x{self.width} scene"])
        y, x = self.offset
        return canvas[..., y : y + self.height, x : x + self.width]

    def pad(self, scene: np.ndarray) -> np.ndarray:
        """A (..., H, W) scene zero-padded around its centre to the grid's canvas."""
        if scene.shape[-2:] != (self.height, self.width):
            raise LayoutError("pad", [f"array {scene.shape[-2:]} is not the scene's "
                                      f"{self.height}x{self.width}"])
        (y, x), (pad_h, pad_w) = self.offset, self.padded
        widths = [(0, 0)] * (scene.ndim - 2)
        widths += [(y, pad_h - self.height - y), (x, pad_w - self.width - x)]
        return np.pad(scene, widths)

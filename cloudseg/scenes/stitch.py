"""Patches ↔ scenes: the 38-Cloud patch grid, cropping, and a blended sliding window.

38-Cloud cuts each scene, zero-padded around its centre to a multiple of 384, into a row-major
grid of 384×384 patches named by (row, col), 1-based. Stitching places patch (r, c) at
((r-1)·384, (c-1)·384) and crops the scene out of the middle of the canvas (`SceneGrid`, which
needs the scene size: only the whole-scene gt knows it).

A network with zero padding is least reliable near the borders of its input window, so
predicting the grid patch by patch leaves seams. `window_offsets` + `blend_weights` +
`BlendCanvas` (one scene-sized accumulator) instead slide a window with `overlap` pixels of
overlap and average the predictions with weights that ramp linearly to ~0 at each window
border: every seam pixel is then dominated by a window whose centre covers it. overlap=0
reproduces the plain patch grid.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cloudseg.errors import ConfigError, LayoutError
from cloudseg.scenes.grid import PATCH, SceneGrid


def grid_size(cells: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(rows, cols) of a scene's grid from its patches' 1-based (row, col)."""
    cells = list(cells)
    return max(r for r, _ in cells), max(c for _, c in cells)


def check_complete(scene: str, cells: Iterable[tuple[int, int]], rows: int, cols: int) -> None:
    """A gap in the grid would silently become a hole of "clear" pixels: refuse it."""
    have = set(cells)
    missing = [
        f"{r}_by_{c}" for r in range(1, rows + 1) for c in range(1, cols + 1) if (r, c) not in have
    ]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise LayoutError(
            scene,
            [
                f"scene {scene}: {len(missing)} of {rows * cols} patches missing "
                f"from its {rows}x{cols} grid: {shown}"
            ],
        )


def stitch(
    patches: Iterable[tuple[int, int, np.ndarray]],
    rows: int,
    cols: int,
    shape: tuple[int, int] | None = None,
    patch: int = PATCH,
) -> np.ndarray:
    """Place (row, col, array[..., patch, patch]) on a rows×cols canvas; crop to `shape` (H, W)."""
    canvas = None
    for r, c, a in patches:
        if not (1 <= r <= rows and 1 <= c <= cols) or a.shape[-2:] != (patch, patch):
            raise LayoutError(
                "stitch",
                [
                    f"patch {r}_by_{c} {a.shape} does not fit a {rows}x{cols} "
                    f"grid of {patch}-pixel patches"
                ],
            )
        if canvas is None:
            canvas = np.zeros((*a.shape[:-2], rows * patch, cols * patch), a.dtype)
        canvas[..., (r - 1) * patch : r * patch, (c - 1) * patch : c * patch] = a
    if canvas is None:
        raise LayoutError("stitch", ["no patches to stitch"])
    return crop(canvas, shape) if shape is not None else canvas


def crop(canvas: np.ndarray, shape: tuple[int, int], patch: int = PATCH) -> np.ndarray:
    """The (H, W) scene out of the middle of its padded canvas (the 38-Cloud centred padding);
    a size that does not belong to the canvas's grid is an error.
    """
    rows, cols = canvas.shape[-2] // patch, canvas.shape[-1] // patch
    return SceneGrid.fitted(shape, rows, cols, "crop", patch).crop(canvas)


def check_overlap(overlap: int, window: int = PATCH) -> None:
    """An overlap outside [0, window) is a ConfigError naming the value."""
    if not 0 <= overlap < window:
        raise ConfigError(f"overlap: must be in [0, {window}) pixels, got {overlap}")


def window_offsets(length: int, window: int = PATCH, overlap: int = 0) -> list[int]:
    """Start offsets of windows covering [0, length): stride window-overlap, last one flush."""
    check_overlap(overlap, window)
    if length < window:
        raise ConfigError(f"a {length}-pixel extent is smaller than the {window}-pixel window")
    offsets = list(range(0, length - window + 1, window - overlap))
    if offsets[-1] != length - window:
        offsets.append(length - window)
    return offsets


def window_spots(
    shape: tuple[int, int], window: int = PATCH, overlap: int = 0
) -> list[tuple[int, int]]:
    """Top-left (y, x) of every window over an (H, W) extent, row-major."""
    h, w = shape
    xs = window_offsets(w, window, overlap)
    return [(y, x) for y in window_offsets(h, window, overlap) for x in xs]


def blend_weights(window: int = PATCH, overlap: int = 0) -> np.ndarray:
    """(window, window) float32 weights: 1 inside, a linear ramp over `overlap` pixels to
    0.5/overlap at the border (never 0, so a pixel seen by one window keeps its value).
    """
    check_overlap(overlap, window)
    if overlap == 0:
        return np.ones((window, window), np.float32)
    ramp = BlendCanvas._ramp(window, overlap)
    return np.outer(ramp, ramp).astype(np.float32)


class BlendCanvas:
    """Weighted average of the window predictions over an (H, W) canvas, in one float32 array.

    The windows are those of `window_spots(shape, window, overlap)`, a product of row and
    column offsets, and the weights `blend_weights` an outer product of one ramp, so each
    pixel's weight total is a product of a row total and a column total: two vectors, not a
    second scene-sized array, and the average is divided in place (no third one). For a
    full 38-Cloud scene that is 236 MiB of accumulators instead of 709 MiB.
    """

    def __init__(self, shape: tuple[int, int], window: int = PATCH, overlap: int = 0) -> None:
        self.window = window
        self.flat = overlap == 0
        self.ramp = self._ramp(window, overlap)  # float64; the weights are its outer product
        self.weights = blend_weights(window, overlap)
        self.total = np.zeros(shape, np.float32)
        self.row_norm = self._norm(shape[0], window, overlap)
        self.col_norm = self._norm(shape[1], window, overlap)
        self.expected = len(window_offsets(shape[0], window, overlap)) * len(
            window_offsets(shape[1], window, overlap))
        self.added = 0

    @staticmethod
    def _ramp(window: int, overlap: int) -> np.ndarray:
        if overlap == 0:
            return np.ones(window, np.float64)
        i = np.arange(window, dtype=np.float64) + 0.5
        return np.minimum(1.0, np.minimum(i, window - i) / overlap)

    def _norm(self, length: int, window: int, overlap: int) -> np.ndarray:
        norm = np.zeros(length, np.float64)
        for start in window_offsets(length, window, overlap):
            norm[start : start + window] += self.ramp
        return norm

    def add(self, y: int, x: int, prediction: np.ndarray) -> None:
        """Add one window's prediction at (y, x) (one of the canvas's window spots), weighted
        by the blend ramp.
        """
        s = self.window
        self.added += 1
        if self.flat:  # all weights 1: p * 1 == p exactly, so skip the product
            self.total[y : y + s, x : x + s] += prediction
            return
        self.total[y : y + s, x : x + s] += prediction * self.weights

    def result(self, rows: int = 512) -> np.ndarray:
        """The blended canvas, divided in place (`rows` rows at a time, to bound the
        temporary): the canvas is used up. A window missing is an error.
        """
        if self.added != self.expected or not (np.all(self.row_norm > 0)
                                               and np.all(self.col_norm > 0)):
            raise LayoutError("blend", [f"{self.added} of {self.expected} windows were added: "
                                        "some pixels were covered by no window"])
        if self.flat and np.all(self.row_norm == 1) and np.all(self.col_norm == 1):
            return self.total  # the plain patch grid: every pixel seen once, weight 1
        for top in range(0, self.total.shape[0], rows):
            block = np.multiply.outer(self.row_norm[top : top + rows], self.col_norm)
            np.divide(self.total[top : top + rows], block, out=self.total[top : top + rows],
                      casting="same_kind")
        return self.total

"""The 38-Cloud protocol's pixel set on validation patches: every pixel of the scene's extent
(no-data margins included), none of the grid's zero padding (`train.ignore_nodata: padding`).

A patch (row, col) of a scene of size (H, W) covers canvas rows (row-1)·384 .. row·384 of the
centred grid (`SceneGrid`); the scene occupies the canvas rectangle at the grid's offset, so the
part of a patch inside the scene is one rectangle, kept as four ints per patch. The scene sizes
come from the whole-scene ground truths (`Entire_scene_gts/`, which 38-Cloud ships for its
training scenes too); a validation scene without one is a ConfigError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cloudseg.errors import ConfigError
from cloudseg.scenes.grid import PATCH, SceneGrid

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from cloudseg.data.layout import PatchId


def scene_sizes(gts: Mapping[str, Path], scenes: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(height, width) of each scene from its whole-scene gt's header."""
    from cloudseg.scenes.geotiff import open_raster

    missing = sorted({s for s in scenes if s not in gts})
    if missing:
        raise ConfigError(
            f"train.ignore_nodata: padding needs the size of every validation scene from its "
            f"Entire_scene_gts/edited_corrected_gts_<scene>.TIF; missing for {', '.join(missing)}")
    sizes = {}
    for scene in sorted(set(scenes)):
        with open_raster(gts[scene]) as src:
            sizes[scene] = (src.height, src.width)
    return sizes


def extent_rects(ids: Sequence[PatchId], sizes: Mapping[str, tuple[int, int]],
                 patch: int = PATCH) -> np.ndarray:
    """(N, 4) int32 (y0, y1, x0, x1): the part of each patch inside its scene, patch coords."""
    out = np.zeros((len(ids), 4), np.int32)
    for i, pid in enumerate(ids):
        grid = SceneGrid.of_scene(*sizes[pid.scene], patch=patch)
        (oy, ox), (py, px) = grid.offset, grid.patch_origin(pid.row, pid.col)
        y0, x0 = max(oy - py, 0), max(ox - px, 0)
        y1 = min(oy + grid.height - py, patch)
        x1 = min(ox + grid.width - px, patch)
        out[i] = (y0, max(y0, y1), x0, max(x0, x1))
    return out


def extent_mask(rects: np.ndarray, size: int, device: torch.device | str = "cpu"
                ) -> torch.Tensor:
    """(B, 1, size, size) bool: True inside each patch's rectangle."""
    import torch

    r = torch.as_tensor(rects, device=device)
    idx = torch.arange(size, device=device)
    rows = (idx[None] >= r[:, 0:1]) & (idx[None] < r[:, 1:2])  # (B, size)
    cols = (idx[None] >= r[:, 2:3]) & (idx[None] < r[:, 3:4])
    return (rows[:, :, None] & cols[:, None, :])[:, None]

"""The per-patch sums behind `cloudseg.data.moments` (and the traits the hard-case panel ranks
patches by), kept as `moments.npz` beside a packed cache: filled row by row while `prepare`
packs (`PatchSums.add`, from the pixels just decoded, on the packing threads), or computed in
parallel for a cache packed before they were kept.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from cloudseg.data.layout import BANDS
from cloudseg.data.progress import parallel_map

FILENAME = "moments.npz"
STRIDE = 4  # panel traits are measured on every 4th pixel: the same ranking, 16 times less work


@dataclass(frozen=True)
class Traits:
    """What the hard-case panel (cloudseg.data.panel) ranks a patch by."""

    valid: float  # share of pixels that hold data
    cloud: float  # share of valid pixels that are cloud
    edges: float  # share of valid pixels on a cloud/clear boundary
    cloud_brightness: float  # mean visible DN of cloud pixels (0 when none)
    clear_brightness: float  # mean visible DN of clear pixels (0 when none)


def patch_traits(image: np.ndarray, mask: np.ndarray) -> Traits:
    """The panel traits of one (4, S, S) image and its (S, S) mask."""
    full_valid = float(image.any(axis=0).mean())  # exact: the no-data rule is a hard one
    img, gt = image[:, ::STRIDE, ::STRIDE], mask[::STRIDE, ::STRIDE].astype(bool)
    valid = img.any(axis=0)
    n = max(int(valid.sum()), 1)
    cloud, clear = gt & valid, ~gt & valid
    boundary = np.zeros_like(gt)
    boundary[:-1] |= gt[:-1] != gt[1:]
    boundary[:, :-1] |= gt[:, :-1] != gt[:, 1:]
    visible = img[:3].astype(np.float64).mean(axis=0)
    return Traits(
        valid=full_valid,
        cloud=float(cloud.sum() / n),
        edges=float((boundary & valid).sum() / n),
        cloud_brightness=float(visible[cloud].mean()) if cloud.any() else 0.0,
        clear_brightness=float(visible[clear].mean()) if clear.any() else 0.0,
    )


class PatchSums:
    """Per-row sums of `n` patches, filled row by row (from any thread), saved as one file."""

    def __init__(self, n: int) -> None:
        self.valid, self.cloud = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.sum = np.zeros((n, len(BANDS)), np.int64)
        self.square = np.zeros((n, len(BANDS)), np.int64)
        self.traits = np.zeros((n, len(fields(Traits))), np.float64)

    def add(self, row: int, image: np.ndarray, mask: np.ndarray) -> None:
        """Row `row`'s sums from its (4, S, S) uint16 image and (S, S) {0, 1} mask."""
        keep = image.any(axis=0)  # valid: not all four bands 0
        self.valid[row] = np.count_nonzero(keep)
        self.cloud[row] = np.count_nonzero(np.logical_and(mask, keep))
        flat = image.reshape(len(BANDS), -1)
        # No-data pixels are 0 in every band: summing all pixels sums the valid ones, with no
        # gather. Squares in float64 are exact: each ≤ 65,535² and a patch's total < 2⁵³.
        self.sum[row] = flat.sum(axis=1, dtype=np.int64)
        wide = flat.astype(np.float64)
        self.square[row] = np.einsum("ij,ij->i", wide, wide)
        self.traits[row] = astuple(patch_traits(image, mask))

    def arrays(self) -> dict[str, np.ndarray]:
        """The sums by name, as stored."""
        return {"valid": self.valid, "cloud": self.cloud, "sum": self.sum,
                "square": self.square, "traits": self.traits}

    def save(self, folder: Path) -> Path:
        """Write `folder/moments.npz` atomically (another process writing the same sums writes
        the same file); returns its path.
        """
        path = Path(folder) / FILENAME
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, valid=self.valid, cloud=self.cloud, sum=self.sum, square=self.square,
                     traits=self.traits)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def has_sums(folder: Path) -> bool:
    """Whether `folder` holds its per-patch sums (a stat: no read)."""
    return (Path(folder) / FILENAME).is_file()


def ensure_sums(folder: Path, images: np.ndarray, masks: np.ndarray,
                progress: bool = False) -> dict[str, np.ndarray]:
    """The sums of the rows of `images`/`masks`, read from `folder`, or computed once (in
    parallel) and kept there.
    """
    path = Path(folder) / FILENAME
    if path.is_file():
        with np.load(path) as stored:
            sums = {k: stored[k] for k in stored.files}
        if len(sums["valid"]) == len(images) and "traits" in sums:
            return sums
    computed = compute_sums(images, masks, progress)
    with contextlib.suppress(OSError):  # a read-only cache: recomputed next time, same result
        computed.save(folder)
    return computed.arrays()


def compute_sums(images: np.ndarray, masks: np.ndarray, progress: bool = False) -> PatchSums:
    """Every row's sums, on the file threads."""
    n = len(images)
    sums = PatchSums(n)

    def one(row: int) -> None:
        sums.add(row, np.asarray(images[row]), np.asarray(masks[row]))

    for _ in parallel_map(one, range(n), n, "patch moments", progress):
        pass
    return sums

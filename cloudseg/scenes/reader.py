"""Reading scene patches ahead of the model, in parallel.

Decoding four PackBits TIFFs per patch costs more CPU time than a GPU needs to run the patch
through a U-Net, so reading serially on the main thread leaves the device idle. Here patches
are decoded on a thread pool (rasterio releases the GIL) straight into their scene's (4, H, W)
mosaic, and each batch of windows is cut into a (pinned, on CUDA) host buffer as soon as the
patches under it are in, a bounded number of batches (`depth`) ahead of the consumer.

Memory stays bounded: a scene's mosaic is allocated when its first batch is queued and dropped
after its last batch is handed out, so at most two mosaics exist at once (the look-ahead may
reach into the next scene), plus `depth` + 1 host batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from cloudseg.errors import LayoutError
from cloudseg.scenes.stitch import PATCH

if TYPE_CHECKING:
    import torch

    from cloudseg.data import PatchRecord

# (n, 4, S, S) → a host buffer for a batch: a torch CPU tensor (page-locked on CUDA) or ndarray
HostBatch: TypeAlias = "np.ndarray | torch.Tensor"
Alloc = Callable[[tuple[int, ...]], HostBatch]


@dataclass
class SceneJob:
    """One scene: its patch records, padded grid and the windows to predict (row-major)."""

    scene: str
    records: list[PatchRecord]
    rows: int
    cols: int
    spots: list[tuple[int, int]]
    overlap: int = 0
    window: int = PATCH
    mosaic: np.ndarray | None = field(default=None, repr=False)  # (4, H, W) uint16 while read
    nodata: np.ndarray | None = field(default=None, repr=False)  # (H, W) bool: all bands 0
    _reads: dict[tuple[int, int], Future[None]] = field(default_factory=dict, repr=False)
    _cells: dict[tuple[int, int], PatchRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._cells = {(r.id.row, r.id.col): r for r in self.records}

    @property
    def padded(self) -> tuple[int, int]:
        """(height, width) of the scene's padded patch grid."""
        return self.rows * PATCH, self.cols * PATCH

    def batches(self, size: int) -> list[list[tuple[int, int]]]:
        """The window spots in batches of `size` (the last one may be shorter)."""
        return [self.spots[i : i + size] for i in range(0, len(self.spots), size)]

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The mosaic and no-data mask, which `_queue` allocates before any read of the scene."""
        if self.mosaic is None or self.nodata is None:
            raise RuntimeError(f"scene {self.scene}: read before its buffers were allocated")
        return self.mosaic, self.nodata


def read_patch(job: SceneJob, rec: PatchRecord) -> None:
    """Decode one patch's bands into its place in the mosaic; note its no-data pixels. A file
    that cannot be decoded is a LayoutError naming it (raised in the consumer's thread).
    """
    from cloudseg.data import BANDS, read_band

    mosaic, nodata = job.buffers()
    r0, c0 = (rec.id.row - 1) * PATCH, (rec.id.col - 1) * PATCH
    view = mosaic[:, r0 : r0 + PATCH, c0 : c0 + PATCH]
    for b, band in enumerate(BANDS):
        path = rec.files[band]
        try:
            read_band(path, out=view[b])
        except Exception as err:  # rasterio/GDAL errors have no common base with OSError
            detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise LayoutError(path.parent, [f"cannot read {path.name}: {detail}"]) from err
    nodata[r0 : r0 + PATCH, c0 : c0 + PATCH] = ~view.any(axis=0)


def _patches_under(job: SceneJob, spots: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The 1-based grid cells that the windows at `spots` overlap, in first-needed order."""
    cells: dict[tuple[int, int], None] = {}
    for y, x in spots:
        for r in range(y // PATCH, (y + job.window - 1) // PATCH + 1):
            for c in range(x // PATCH, (x + job.window - 1) // PATCH + 1):
                cells[(r + 1, c + 1)] = None
    return list(cells)


def _cut(
    job: SceneJob, spots: list[tuple[int, int]], reads: list[Future[None]], alloc: Alloc
) -> HostBatch:
    """Wait for the patches under `spots`, then copy the windows into a fresh host buffer."""
    for read in reads:
        read.result()  # re-raises a read error here, and in the consumer
    s = job.window
    mosaic, _ = job.buffers()
    buf = alloc((len(spots), mosaic.shape[0], s, s))
    out = buf if isinstance(buf, np.ndarray) else buf.numpy()
    for k, (y, x) in enumerate(spots):
        out[k] = mosaic[:, y : y + s, x : x + s]
    return buf


def _queue(
    pool: ThreadPoolExecutor, job: SceneJob, spots: list[tuple[int, int]], alloc: Alloc
) -> Future[HostBatch]:
    if job.mosaic is None:
        h, w = job.padded
        job.mosaic = np.empty((4, h, w), np.uint16)  # a complete grid overwrites every pixel
        job.nodata = np.empty((h, w), bool)
        job._reads = {}
    reads = []
    for cell in _patches_under(job, spots):
        if cell not in job._reads:
            job._reads[cell] = pool.submit(read_patch, job, job._cells[cell])
        reads.append(job._reads[cell])
    # FIFO pool: every read this cut waits on was queued before it, so it never waits on a
    # task that no worker has picked up (no deadlock, even with one worker).
    return pool.submit(_cut, job, spots, reads, alloc)


def prefetch_batches(
    jobs: list[SceneJob], batch_size: int, alloc: Alloc, workers: int, depth: int = 2
) -> Generator[tuple[SceneJob, list[tuple[int, int]], HostBatch], None, None]:
    """(job, spots, host batch) for every batch of every job, in order, read by `workers`
    threads while the consumer works on earlier batches; at most `depth` batches are queued
    ahead of the one handed out. A job's `nodata` is complete once its last batch is out;
    its mosaic is then released. Close the generator to stop (pending reads are cancelled).
    """
    plan = deque(
        (job, spots, i == len(batches) - 1)
        for job in jobs
        for batches in [job.batches(batch_size)]
        for i, spots in enumerate(batches)
    )
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cloudseg-read")
    ahead: deque[tuple[SceneJob, list[tuple[int, int]], bool, Future[HostBatch]]] = deque()
    try:
        while plan or ahead:
            while plan and len(ahead) <= depth:  # the batch handed out next + `depth` more
                job, spots, last = plan.popleft()
                ahead.append((job, spots, last, _queue(pool, job, spots, alloc)))
            job, spots, last, future = ahead.popleft()
            batch = future.result()
            if last:
                job.mosaic, job._reads = None, {}  # every cut of this scene is done
            yield job, spots, batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

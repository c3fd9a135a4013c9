"""A trial's patches resident on the training device, batched, cropped and augmented there.

38-Cloud's 8,400 training patches are 9.9 GB as uint16; a trial uses a 50 % subset of 80 % of
them plus the validation patches, ~6 GB, which a large GPU holds with room to spare. Copied to
the device once per trial, every epoch then draws its order, crops and flips/rotations on the
device, so a step never waits on host I/O or a DataLoader worker. Where the subset does not fit
(`fits`), `run_training` falls back to the pinned-memory loader over the same packed cache.

The draws differ from `PatchDataset`'s (another RNG), but follow the same rules: a random
`crop`-pixel window per item (the centred one when `random_crop` is off), one of the 8
symmetries of the square per item when `augment`, a fresh draw per epoch (`set_epoch`),
reproducible from (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from cloudseg.data.cache import PatchCache
from cloudseg.data.layout import PATCH_SIZE

FIT_FRACTION = 0.5  # of the device's free memory: the rest is for activations and the model


def subset_bytes(n: int) -> int:
    """Device bytes of n patches: 4 uint16 bands + a uint8 mask of 384²."""
    return n * PATCH_SIZE * PATCH_SIZE * (4 * 2 + 1)


def fits(n: int, device: torch.device, share: float = 1.0) -> bool:
    """Whether n patches fit in FIT_FRACTION of this run's `share` of a CUDA `device`'s free
    memory (runs that share a GPU start together, each seeing all of it free).
    """
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return subset_bytes(n) <= FIT_FRACTION * share * free


class DeviceBatches:
    """Batches of (images uint16 (B,4,c,c), masks uint8 (B,1,c,c)) of `indices`' patches, drawn
    from tensors that live on `device`. Iterating yields one epoch; `len` is batches per epoch.
    """

    def __init__(self, cache: PatchCache, indices: Sequence[int] | np.ndarray,
                 device: torch.device | str, batch_size: int, *, crop: int | None = None,
                 augment: bool = False, random_crop: bool = True, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0) -> None:
        rows = np.sort(np.asarray(indices, dtype=np.int64))
        self.device = torch.device(device)
        # int16 views: indexing and flips exist for int16 on every device, not for uint16.
        self.images = _upload(cache.images, rows, self.device).view(torch.int16)
        self.masks = _upload(cache.masks, rows, self.device)
        self.order = torch.as_tensor(np.argsort(np.argsort(np.asarray(indices))), device="cpu")
        self.n, self.batch_size = len(rows), max(1, int(batch_size))
        self.crop = crop or PATCH_SIZE
        self.augment, self.random_crop = augment, random_crop
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0
        self.dataset = self  # fit() calls loader.dataset.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that seeds the next iteration's shuffle, crops and flips."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        # Item i of the caller's `indices` is row order[i] of the device tensors.
        items = torch.randperm(self.n, generator=gen) if self.shuffle else torch.arange(self.n)
        rows = self.order[items]
        size = PATCH_SIZE - self.crop
        if self.random_crop and size:
            corners = torch.randint(0, size + 1, (self.n, 2), generator=gen)
        else:
            corners = torch.full((self.n, 2), size // 2)
        turns = torch.randint(0, 8, (self.n,), generator=gen) if self.augment else None
        for b in range(len(self)):
            sel = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self._batch(rows[sel], corners[sel], None if turns is None else turns[sel])

    def _batch(
        self, rows: torch.Tensor, corners: torch.Tensor, turns: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = rows.to(self.device, non_blocking=True)
        images, masks = self.images.index_select(0, rows), self.masks.index_select(0, rows)
        if self.crop < PATCH_SIZE:
            images, masks = _crop(images, corners, self.crop), _crop(masks, corners, self.crop)
        if turns is not None:
            images, masks = _symmetries(images, turns), _symmetries(masks, turns)
        return images.view(torch.uint16), masks


def _upload(array: np.ndarray, rows: np.ndarray, device: torch.device,
            chunk: int = 256) -> torch.Tensor:
    """Rows of a (memmapped) array onto `device`, `chunk` patches at a time, so host memory
    holds one chunk rather than the whole subset.
    """
    dtype = torch.int16 if array.dtype == np.uint16 else torch.uint8
    out = torch.empty((len(rows), *array.shape[1:]), dtype=dtype, device=device)
    for start in range(0, len(rows), chunk):
        part = np.ascontiguousarray(array[rows[start : start + chunk]])
        host = torch.from_numpy(part.view(np.int16) if part.dtype == np.uint16 else part)
        out[start : start + len(part)].copy_(host)
    return out if array.ndim == 4 else out.unsqueeze(1)


def _crop(x: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """A `size`-pixel window per item at its own (top, left): one gather for the batch."""
    span = torch.arange(size, device=x.device)
    top, left = (corners.to(x.device)[:, k, None] + span for k in (0, 1))
    b = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[b, c, top[:, None, :, None], left[:, None, None, :]]


def _symmetries(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Item i gets rot90^(t%4) then, for t >= 4, a left-right flip (as PatchDataset does)."""
    out = torch.empty_like(x)
    for t in turns.unique().tolist():
        sel = (turns == t).nonzero().flatten().to(x.device)
        part = torch.rot90(x.index_select(0, sel), t % 4, dims=(-2, -1))
        out[sel] = part.flip(-1) if t >= 4 else part
    return out

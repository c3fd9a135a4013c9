"""A torch Dataset over the packed cache. It returns raw uint16 DN (normalisation happens on the
device, in training) and draws its crop and flips from a per-item RNG seeded by
(seed, epoch, index), so a run is reproducible whatever the number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from cloudseg.data.buffers import BufferPool
from cloudseg.data.cache import PatchCache
from cloudseg.data.layout import PATCH_SIZE
from cloudseg.errors import ConfigError


class PatchDataset(Dataset):
    """Item i -> (image uint16 (4,H,W) R G B NIR, mask uint8 (1,H,W) {0,1}) of patch indices[i].

    `crop` (None = 384) takes a random window when `random_crop`, else the centred one.
    `augment` applies one of the 8 flips/rotations identically to image and mask. Call
    `set_epoch(e)` each epoch for fresh draws; the same (seed, epoch, i) gives the same item.
    """

    def __init__(self, cache: PatchCache, indices: Sequence[int] | np.ndarray | None = None,
                 crop: int | None = None, augment: bool = False, random_crop: bool = True,
                 seed: int = 0) -> None:
        self.cache = cache
        n = len(cache)
        idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
            raise ConfigError(f"indices must be a 1-D array of rows in 0..{n - 1}")
        if crop is not None and not 1 <= crop <= PATCH_SIZE:
            raise ConfigError(f"crop must be in 1..{PATCH_SIZE} or None, got {crop}")
        self.indices = idx
        self.crop = crop or PATCH_SIZE
        self.augment = augment
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0
        self._buffers = BufferPool()

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (crop, flips) for the next pass; workers pick it up when the
        DataLoader re-creates them (the default, persistent_workers=False).
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def window(self, i: int) -> tuple[int, int, int]:
        """(top, left, transform 0..7) for item i: deterministic in (seed, epoch, i)."""
        size = PATCH_SIZE - self.crop
        if not (self.random_crop and size) and not self.augment:
            return size // 2, size // 2, 0
        rng = np.random.default_rng((self.seed % 2**63, self.epoch % 2**63, int(i)))
        top, left = (rng.integers(0, size + 1, 2) if self.random_crop and size
                     else (size // 2, size // 2))
        return int(top), int(left), int(rng.integers(0, 8)) if self.augment else 0

    def _views(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only views of item i's image (4,c,c) and mask (1,c,c) in the cache."""
        row = int(self.indices[i])
        top, left, t = self.window(i)
        win = np.s_[top:top + self.crop, left:left + self.crop]
        image = self.cache.images[row][(slice(None), *win)]
        mask = self.cache.masks[row][win][None]
        return (_transform(image, t), _transform(mask, t)) if t else (image, mask)

    def __getitem__(self, i: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i, or the stacked batch of items `i` when given a list (see `loader`)."""
        if not isinstance(i, int | np.integer):
            return self._batch(list(i))
        image, mask = self._views(i)
        # exactly one copy out of the read-only page cache into memory torch owns
        return torch.from_numpy(image.copy(order="C")), torch.from_numpy(mask.copy(order="C"))

    def _batch(self, items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One copy per item straight into the batch arrays: no per-item tensors, no stack,
        and (cloudseg.data.buffers) no fresh pages to zero for each batch.
        """
        n, c = len(items), self.crop
        images = self._buffers.get((n, 4, c, c), torch.uint16)
        masks = self._buffers.get((n, 1, c, c), torch.uint8)
        out_i, out_m = images.numpy(), masks.numpy()
        for k, i in enumerate(items):
            image, mask = self._views(i)
            np.copyto(out_i[k], image)
            np.copyto(out_m[k], mask)
        return images, masks

    def loader(self, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               num_workers: int = 0, **kwargs: Any) -> DataLoader:
        """A DataLoader that fetches whole batches (`dataset[list]`): the same items and
        batches as `DataLoader(self, batch_size, shuffle, ...)` with the default collate, about
        twice as fast because nothing is stacked. Shuffling uses torch's global RNG as usual,
        or `generator=` when given.
        """
        generator = kwargs.pop("generator", None)
        order = (RandomSampler(self, generator=generator) if shuffle
                 else SequentialSampler(self))
        if num_workers:
            kwargs.setdefault("multiprocessing_context", worker_start_method())
        return DataLoader(self, batch_size=None, num_workers=num_workers,
                          sampler=BatchSampler(order, batch_size, drop_last), **kwargs)


def worker_start_method() -> str | None:
    """"fork" where the OS has it: a loader worker then starts as a copy of the process that
    trains (the open cache, torch imported) in milliseconds. Workers are started anew every
    epoch (they must see `set_epoch`), and a process's default method need not be fork: in a
    sweep's trial process (a forkserver child) it is forkserver, whose workers re-import torch,
    about two seconds each, every epoch. None (the default) where there is no fork.
    """
    import multiprocessing as mp

    return "fork" if "fork" in mp.get_all_start_methods() else None


def _transform(a: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes: rot90^(t%4), then a flip."""
    a = np.rot90(a, t % 4, axes=(-2, -1))
    return a[..., ::-1] if t >= 4 else a

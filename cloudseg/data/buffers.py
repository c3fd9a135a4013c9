"""Batch buffers for the batched loader. Zeroing fresh pages for a 38 MB batch costs about twice
the copy into it, so in the main process finished batches are recycled: a buffer is reused only
when nothing references it any more (every tensor or view of a batch holds a reference to its
numpy array), so a batch a caller still holds is never overwritten. Inside a DataLoader worker the
buffer is allocated in shared memory, as the default collate does, so sending it costs no copy.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils.data import get_worker_info

_NUMPY = {torch.uint16: np.uint16, torch.uint8: np.uint8}


class BufferPool:
    """Recycled host buffers for batches built in this process (DataLoader workers share memory)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._pool: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised tensor of `shape`; the caller overwrites all of it."""
        if get_worker_info() is not None:
            numel = int(np.prod(shape))
            storage = torch.empty(0, dtype=dtype).untyped_storage()._new_shared(
                numel * dtype.itemsize)
            return torch.empty(0, dtype=dtype).set_(storage).view(shape)
        np_dtype = _NUMPY[dtype]
        for k in range(len(self._pool)):
            # references: the pool list and getrefcount's argument; anything more is a user
            if (self._pool[k].shape == shape and self._pool[k].dtype == np_dtype
                    and sys.getrefcount(self._pool[k]) <= 2):
                return torch.from_numpy(self._pool[k])
        buffer = np.empty(shape, np_dtype)  # numpy backs large arrays with huge pages
        if len(self._pool) >= self.size:
            self._pool.pop(0)
        self._pool.append(buffer)
        return torch.from_numpy(buffer)

    def __getstate__(self) -> dict:
        return {"size": self.size, "_pool": []}  # buffers stay with their process

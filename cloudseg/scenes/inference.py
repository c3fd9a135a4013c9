"""Scene-scale inference: a model applied to uint16 band windows, in batches, under AMP on CUDA,
with optional test-time augmentation, and slid over a scene mosaic with seam-free blending.

Kept apart from file handling (`cloudseg.scenes.predict`) so the sweep, tests and benchmarks can run
the same inference on in-memory arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudseg.config import TrainConfig
from cloudseg.scenes.stitch import PATCH, BlendCanvas, check_overlap, window_spots

if TYPE_CHECKING:
    import torch

# Inference batch size per device. On the CPU a U-Net runs fastest one window at a time in
# channels_last (2 cores: 33 patches/s at batch 1 against 13 for batches of 16 in NCHW), where
# a GPU wants batches to fill its cores.
CPU_BATCH, CUDA_BATCH = 1, 16


def default_batch_size(device: str = "auto") -> int:
    """The inference batch size that is fastest on `device` ("auto" = CUDA when present)."""
    import torch

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return CUDA_BATCH if cuda else CPU_BATCH


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy with each BatchNorm folded into the convolution before it (torch.fx):
    the same function, one pass less over every activation. On 2 CPU cores a width-8 U-Net ran
    24-33 patches/s folded in channels_last against 20-23 unfolded (13-15 in NCHW). The folded
    model must give the plain one's output on a probe input; a model fx cannot trace, or one
    where folding changes the function (R2U-Net applies one conv with and without its norm), is
    returned as it is.
    """
    import copy

    import torch
    from torch.fx.experimental.optimization import fuse

    model = model.eval()
    try:
        folded = fuse(copy.deepcopy(model))
        probe = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            same = torch.allclose(folded(probe), model(probe), rtol=1e-3, atol=1e-4)
    except Exception:  # noqa: BLE001 - untraceable control flow or an odd probe size
        return model
    return folded if same else model


class model_threads:  # noqa: N801 - a context manager, named for what it sets
    """How `predict` runs the model: on CUDA, batches are queued from this thread (one ahead);
    on the CPU, one batch per core at once, each on a single torch thread. torch's own
    threads split every small convolution and wait for each other at its end, and they stall
    whenever the patch readers, the GeoTIFF writers or another process take a core (2 shared
    cores: whole `predict` 17 patches/s this way, the model alone 8 with two torch threads);
    windows are independent, so whole batches in parallel keep every core busy without that
    waiting. The process's torch thread count is restored on exit.

        with model_threads(cuda) as run:
            pending = run(predictor.start, batch)  # a Future of the Pending
    """

    def __init__(self, cuda: bool) -> None:
        import os

        self.cuda = cuda
        self.ahead = 1 if cuda else max(1, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 0

    def __enter__(self) -> model_threads:
        import torch

        if not self.cuda:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self._pool = ThreadPoolExecutor(self.ahead, thread_name_prefix="cloudseg-model")
        return self

    def __call__(self, fn: Callable[..., Pending], *args: Any) -> Future[Pending]:
        """`fn(*args)` on a free core (CPU), or right here (CUDA), as a Future."""
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future[Pending] = Future()
        done.set_result(fn(*args))  # CUDA: start() only queues the work
        return done

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            import torch

            self._pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(self._threads)


class WindowPredictor:
    """Model + normalisation + device: uint16 (N, 4, S, S) windows → float32 (N, S, S) cloud
    probabilities, in batches, under AMP on CUDA; `tta` averages the 8 flips/rotations.
    `batch_size` None picks the device's fastest (`default_batch_size`); the layout is
    channels_last on the CPU too (faster there for inference, unlike training), where `fold`
    folds BatchNorm into the convolutions first.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_cfg: TrainConfig,
        device: str = "auto",
        tta: bool = False,
        batch_size: int | None = None,
        fold: bool = True,
    ) -> None:
        import torch

        from cloudseg.training.device import select_device

        self.setup = select_device(train_cfg.model_copy(update={"device": device}))
        cuda = self.setup.is_cuda
        self.layout = self.setup.memory_format if cuda else torch.channels_last
        # folding costs a trace (0.1-0.2 s): it pays over a scene's windows, not over a few
        model = model.eval() if cuda or not fold else fold_batchnorm(model.eval())
        # torch takes a device and a memory format in one call; its stubs list them apart
        self.model = model.to(self.setup.device, memory_format=self.layout)  # type: ignore[call-overload]
        size = batch_size or (CUDA_BATCH if cuda else CPU_BATCH)
        self.train_cfg, self.tta, self.batch_size = train_cfg, tta, max(1, size)
        self.evaluated = 0
        self._count = threading.Lock()  # `start` may run on several threads (model_threads)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities for any number of windows, `batch_size` at a time, synchronously."""
        out = [
            self.start(windows[i : i + self.batch_size]).result()
            for i in range(0, len(windows), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, *windows.shape[-2:]), np.float32)

    def host_batch(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised uint16 CPU tensor for a batch of windows, page-locked on CUDA so its
        copy to the device runs asynchronously (torch's caching host allocator recycles it once
        that copy is done). Safe to call from reader threads.
        """
        import torch

        return torch.empty(shape, dtype=torch.uint16, pin_memory=self.setup.is_cuda)

    def start(self, windows: np.ndarray | torch.Tensor) -> Pending:
        """Queue one batch (uint16 ndarray or tensor, (N, 4, S, S)); on CUDA this returns as
        soon as the work is queued, so the caller can prepare the next batch meanwhile.
        """
        import torch

        from cloudseg.normalisation import normalise

        x = windows if isinstance(windows, torch.Tensor) else torch.from_numpy(windows)
        x = x.to(self.setup.device, non_blocking=True)  # asynchronous from pinned memory
        x = normalise(x, self.train_cfg).contiguous(memory_format=self.layout)
        views = [(k, f) for k in range(4) for f in (False, True)] if self.tta else [(0, False)]
        with torch.inference_mode(), self.setup.autocast():
            if not self.tta:  # the common case: no view to transform or average
                prob = torch.sigmoid(self.model(x).float())[:, 0]
            else:
                prob = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
                for k, flip in views:  # predict on a transformed view, map the answer back
                    v = torch.rot90(x, k, dims=(-2, -1))
                    v = v.flip(-1) if flip else v
                    p = torch.sigmoid(self.model(v).float())[:, 0]
                    p = p.flip(-1) if flip else p
                    prob += torch.rot90(p, -k, dims=(-2, -1))
                prob /= len(views)
        with self._count:
            self.evaluated += len(views) * x.shape[0]
        if not self.setup.is_cuda:
            return Pending(prob.numpy())
        host = torch.empty(prob.shape, dtype=prob.dtype, pin_memory=True)
        host.copy_(prob, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return Pending(host, done)


class Pending:
    """A batch of probabilities that may still be in flight on the device."""

    def __init__(
        self, host: np.ndarray | torch.Tensor, done: torch.cuda.Event | None = None
    ) -> None:
        self._host, self._done = host, done

    def result(self) -> np.ndarray:
        """(N, S, S) float32; waits for the device copy when there is one."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None
        return self._host if isinstance(self._host, np.ndarray) else self._host.numpy()


def predict_mosaic(
    predictor: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    overlap: int = 0,
    window: int = PATCH,
    batch_size: int | None = None,
) -> np.ndarray:
    """(4, H, W) uint16 mosaic → (H, W) float32 probability. With overlap=0 and H, W multiples
    of `window` the windows are exactly the patch grid. No-data pixels keep the network's
    output (the 38-Cloud protocol scores them).
    """
    check_overlap(overlap, window)
    canvas = BlendCanvas(image.shape[-2:], window, overlap)
    spots = window_spots(image.shape[-2:], window, overlap)
    step = batch_size or int(getattr(predictor, "batch_size", CUDA_BATCH))
    for i in range(0, len(spots), step):
        chunk = spots[i : i + step]
        probs = predictor(np.stack([image[:, y : y + window, x : x + window] for y, x in chunk]))
        for (y, x), p in zip(chunk, probs, strict=True):
            canvas.add(y, x, p)
    return canvas.result()

"""Scene-scale inference: a model applied to uint16 band windows, in batches, under AMP on CUDA,
with optional test-time augmentation, and slid over a scene mosaic with seam-free blending.

Kept apart from file handling (`cloudseg.predict`) so the sweep, tests and benchmarks can run
the same inference on in-memory arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cloudseg.config import TrainConfig
from cloudseg.stitch import PATCH, BlendCanvas, check_overlap, window_offsets


class WindowPredictor:
    """Model + normalisation + device: uint16 (N, 4, S, S) windows → float32 (N, S, S) cloud
    probabilities, in batches, under AMP on CUDA; `tta` averages the 8 flips/rotations."""

    def __init__(
        self,
        model,
        train_cfg: TrainConfig,
        device: str = "auto",
        tta: bool = False,
        batch_size: int = 16,
    ):
        from cloudseg.device import select_device

        self.setup = select_device(train_cfg.model_copy(update={"device": device}))
        self.model = model.to(self.setup.device, memory_format=self.setup.memory_format).eval()
        self.train_cfg, self.tta, self.batch_size = train_cfg, tta, max(1, batch_size)
        self.evaluated = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = [
            self._batch(windows[i : i + self.batch_size])
            for i in range(0, len(windows), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, *windows.shape[-2:]), np.float32)

    def _batch(self, windows: np.ndarray) -> np.ndarray:
        import torch

        from cloudseg.normalise import normalise

        x = torch.from_numpy(np.ascontiguousarray(windows)).to(self.setup.device, non_blocking=True)
        x = normalise(x, self.train_cfg).contiguous(memory_format=self.setup.memory_format)
        views = [(k, f) for k in range(4) for f in (False, True)] if self.tta else [(0, False)]
        prob = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
        with torch.inference_mode(), self.setup.autocast():
            for k, flip in views:  # predict on a transformed view, map the answer back
                v = torch.rot90(x, k, dims=(-2, -1))
                v = v.flip(-1) if flip else v
                p = torch.sigmoid(self.model(v).float())[:, 0]
                p = p.flip(-1) if flip else p
                prob += torch.rot90(p, -k, dims=(-2, -1))
        self.evaluated += len(views) * x.shape[0]
        return (prob / len(views)).cpu().numpy()


def predict_mosaic(
    predictor: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    overlap: int = 0,
    window: int = PATCH,
    batch_size: int = 16,
    mask_nodata: bool = True,
) -> np.ndarray:
    """(4, H, W) uint16 mosaic → (H, W) float32 probability. With overlap=0 and H, W multiples
    of `window` the windows are exactly the patch grid. No-data pixels (all bands 0) get 0."""
    check_overlap(overlap, window)
    h, w = image.shape[-2:]
    canvas = BlendCanvas((h, w), window, overlap)
    spots = [
        (y, x)
        for y in window_offsets(h, window, overlap)
        for x in window_offsets(w, window, overlap)
    ]
    for i in range(0, len(spots), batch_size):
        chunk = spots[i : i + batch_size]
        probs = predictor(np.stack([image[:, y : y + window, x : x + window] for y, x in chunk]))
        for (y, x), p in zip(chunk, probs, strict=True):
            canvas.add(y, x, p)
    prob = canvas.result()
    if mask_nodata:
        prob[(image == 0).all(axis=0)] = 0.0
    return prob

"""The validation overlay as W&B images with `masks=` (prediction and ground truth).

W&B's mask viewer needs the raw masks, not a composite PNG. The sweep therefore uploads, beside
the overlay PNG, an `overlay_masks.npz` Optuna artifact (listed as `artifacts["overlay_masks"]`):

    image         uint8 (H, W, 3) or (N, H, W, 3)  RGB preview of the validation patch(es)
    prediction    uint8 (H, W)    or (N, H, W)     {0, 1}: 1 = cloud (thresholded model output)
    ground_truth  uint8 (H, W)    or (N, H, W)     {0, 1}: 1 = cloud
    patch         str   ()        or (N,)          optional caption (e.g. the patch name)

`save_overlay_masks` writes exactly that. Without it the overlay PNG is still logged, as a plain
image. The helpers import numpy/PIL/wandb lazily: importing this module stays cheap.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from optuna.artifacts import FileSystemArtifactStore

MASKS_FILENAME = "overlay_masks.npz"
MASKS_KEY = "overlay_masks"  # key in the trial's `artifacts` user attr
OVERLAY_KEY = "overlay"
CLASS_LABELS = {0: "clear", 1: "cloud"}

log = logging.getLogger(__name__)


def save_overlay_masks(
    path: str | Path,
    image: ArrayLike,
    prediction: ArrayLike,
    ground_truth: ArrayLike,
    patch: Sequence[str] | None = None,
) -> Path:
    """Write the mask bundle the mirror reads; shapes are checked so a bad bundle fails here."""
    import numpy as np

    image = np.asarray(image, dtype=np.uint8)
    pred = np.asarray(prediction).astype(np.uint8)
    gt = np.asarray(ground_truth).astype(np.uint8)
    if image.shape[-1] != 3 or image.shape[:-1] != pred.shape or pred.shape != gt.shape:
        raise ValueError(
            f"{MASKS_FILENAME}: expected image (..., H, W, 3) and masks (..., H, W) of the same "
            f"H, W; got image {image.shape}, prediction {pred.shape}, ground_truth {gt.shape}"
        )
    arrays: dict[str, Any] = {"image": image, "prediction": pred, "ground_truth": gt}
    if patch is not None:
        arrays["patch"] = np.asarray(patch, dtype=str)
    path = Path(path)
    with path.open("wb") as fh:  # a file handle: np.savez would otherwise append ".npz"
        np.savez_compressed(fh, **arrays)
    return path


def load_overlay_masks(data: bytes) -> list[dict[str, Any]]:
    """The bundle as a list of {image, prediction, ground_truth, patch} per patch."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        image, pred, gt = npz["image"], npz["prediction"], npz["ground_truth"]
        patch = npz["patch"] if "patch" in npz.files else None
    if image.ndim == 3:
        image, pred, gt = image[None], pred[None], gt[None]
        patch = None if patch is None else patch.reshape(1)
    if image.shape[:3] != pred.shape or pred.shape != gt.shape:
        raise ValueError(
            f"{MASKS_FILENAME}: shapes disagree: {image.shape} {pred.shape} {gt.shape}"
        )
    return [
        {
            "image": image[i],
            "prediction": (pred[i] > 0).astype(np.uint8),
            "ground_truth": (gt[i] > 0).astype(np.uint8),
            "patch": None if patch is None else str(patch[i]),
        }
        for i in range(image.shape[0])
    ]


def read_artifact(artifact_store: FileSystemArtifactStore, artifact_id: str) -> bytes:
    """The bytes of one artifact of the study's store."""
    with artifact_store.open_reader(artifact_id) as fh:
        return fh.read()


def overlay_media(
    artifacts: dict[str, str], artifact_store: FileSystemArtifactStore | None
) -> dict[str, Any]:
    """W&B media to log with the trial's best epoch (the model the overlay shows):
    {"overlay": [wandb.Image, ...]} or {}.

    A missing or unreadable artifact is logged and skipped: the metrics still go up.
    """
    if artifact_store is None or not artifacts:
        return {}
    import wandb

    if MASKS_KEY in artifacts:
        try:
            patches = load_overlay_masks(read_artifact(artifact_store, artifacts[MASKS_KEY]))
        except Exception as exc:  # a bad bundle must not cost the trial its run
            log.warning("W&B mirror: cannot read %s (%s): %s", MASKS_KEY, artifacts[MASKS_KEY], exc)
        else:
            return {
                OVERLAY_KEY: [
                    wandb.Image(
                        p["image"],
                        caption=p["patch"],
                        masks={
                            "prediction": {
                                "mask_data": p["prediction"],
                                "class_labels": CLASS_LABELS,
                            },
                            "ground_truth": {
                                "mask_data": p["ground_truth"],
                                "class_labels": CLASS_LABELS,
                            },
                        },
                    )
                    for p in patches
                ]
            }
    if OVERLAY_KEY in artifacts:
        try:
            from PIL import Image

            picture = Image.open(io.BytesIO(read_artifact(artifact_store, artifacts[OVERLAY_KEY])))
            picture.load()
        except Exception as exc:
            log.warning("W&B mirror: cannot read overlay (%s): %s", artifacts[OVERLAY_KEY], exc)
        else:
            return {OVERLAY_KEY: [wandb.Image(picture.convert("RGB"), caption="overlay")]}
    return {}

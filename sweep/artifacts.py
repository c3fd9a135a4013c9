"""Per-trial artifacts through Optuna's artifact store, so the dashboard shows them next to the
trial: a validation overlay PNG, the learning curve PNG and the best checkpoint (safetensors).

The overlay is drawn in the trial's child process (it has the model and the data), the curve by
the worker meanwhile (it has the history); the worker uploads them with
`optuna.artifacts.upload_artifact` and lists the ids in the trial's user attr `artifacts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.mirror.media import MASKS_FILENAME, MASKS_KEY, save_overlay_masks

if TYPE_CHECKING:
    from types import ModuleType

    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from cloudseg import FitResult, PatchCache, RunConfig
# prediction colours: true positive white, false positive red, false negative blue, TN black
TP, FP, FN = (1.0, 1.0, 1.0), (0.9, 0.1, 0.1), (0.1, 0.4, 1.0)


def artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    """Optuna's file-system artifact store on `directory` (created). Its `folder` attribute
    names the folder in errors: Optuna keeps its own copy of the path private.
    """
    from optuna.artifacts import FileSystemArtifactStore

    class FolderArtifactStore(FileSystemArtifactStore):
        folder = Path(directory)

        def __reduce__(self) -> tuple[Any, ...]:  # pickles as the call that makes it
            return artifact_store, (str(self.folder),)

    Path(directory).mkdir(parents=True, exist_ok=True)
    return FolderArtifactStore(str(directory))


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (workers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve_png(history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Train/val loss (left axis) and validation IoU (right axis) per epoch."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    right = ax.twinx()
    right.plot(epochs, [h["iou"] for h in history], "^-", color="tab:green", label="val IoU")
    right.set_ylabel("validation IoU")
    right.set_ylim(0, 1)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title(title or "learning curve", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _false_colour(image: np.ndarray) -> np.ndarray:
    """(4,H,W) uint16 R,G,B,NIR → (H,W,3) NIR-R-G, 2–98 % stretch (clouds bright, land red)."""
    rgb = np.stack([image[3], image[0], image[1]], axis=-1).astype(np.float32)
    valid = image.any(axis=0)
    if valid.any():
        lo, hi = np.percentile(rgb[valid], [2, 98])
        rgb = np.clip((rgb - lo) / max(hi - lo, 1.0), 0, 1)
    rgb[~valid] = 0.5
    return rgb


def grid_png(
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str],
    path: Path,
    *,
    row_labels: Sequence[str] = (),
    caption: str = "",
    step: int = 2,
) -> Path:
    """Images (H, W, 3: floats in [0, 1] or uint8) in a grid, every `step`-th pixel (the
    colours stay exact), a title over each column, a label left of each row and a caption on
    top (a line per newline): numpy and Pillow, a tenth of a second where a matplotlib figure
    of the same grid took a second on this machine's cores.
    """
    from PIL import Image, ImageDraw, ImageFont

    font, small = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    longest = max((small.getlength(t) for label in row_labels for t in label.split("\n")),
                  default=0.0)
    gap, line = 4, 16
    label_width = max(164, int(longest) + 12) if row_labels else 0  # no label is cut
    top = line * len(caption.splitlines()) + (4 if caption else 0)
    head = top + line * max(len(t.split("\n")) for t in titles) + 8
    cells = [[_as_uint8(image[::step, ::step]) for image in row] for row in rows]
    h, w = cells[0][0].shape[:2]
    # A row is as tall as its image or its label, whichever is taller (images centred).
    label_lines = max((len(label.split("\n")) for label in row_labels), default=0)
    row_h = max(h, 13 * label_lines + 4)
    canvas = np.full((head + len(cells) * (row_h + gap) - gap,
                      label_width + len(titles) * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            y, x = head + r * (row_h + gap) + (row_h - h) // 2, label_width + c * (w + gap)
            canvas[y:y + h, x:x + w] = cell
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for k, text in enumerate(caption.splitlines()):
        draw.text((4, 2 + line * (k + 0.5)), text, fill=(0, 0, 0), font=font, anchor="lm")
    for c, title in enumerate(titles):
        for k, text in enumerate(title.split("\n")):  # a line each, centred over the column
            draw.text((label_width + c * (w + gap) + w / 2, top + 4 + line * (k + 0.5)), text,
                      fill=(0, 0, 0), font=font, anchor="mm")
    for r, label in enumerate(row_labels):
        lines = label.split("\n")
        for k, text in enumerate(lines):  # centred on the row's height
            y = head + r * (row_h + gap) + row_h / 2 + 13 * (k - (len(lines) - 1) / 2)
            draw.text((4, y), text, fill=(0, 0, 0), font=small, anchor="lm")
    picture.save(path, compress_level=1)  # zlib's default level took 0.16 s for 6 rows
    return path


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def panel_row(false_colour: np.ndarray, truth: np.ndarray, predictions: Sequence[np.ndarray],
              valid: np.ndarray) -> list[np.ndarray]:
    """One grid row for a panel patch: its false colour, its truth (white cloud), and each
    prediction coloured against the truth (`confusion_colours`).
    """
    truth_rgb = np.repeat(truth[..., None], 3, -1).astype(np.float32)
    return [false_colour, truth_rgb, *(confusion_colours(p, truth, valid) for p in predictions)]


def confusion_colours(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """RGB of a prediction against the truth: TP white, FP red, FN blue, no-data grey."""
    out = np.zeros((*pred.shape, 3), np.float32)
    out[pred & truth] = TP
    out[pred & ~truth] = FP
    out[~pred & truth] = FN
    out[~valid] = 0.5
    return out


def study_panel(config: RunConfig, cache: PatchCache | None = None) -> list:
    """The study's hard-case panel (cloudseg.data.panel): a function of the data and the split
    only, so every trial of a study draws the same patches. `cache`: `config`'s, when open.
    """
    from cloudseg import ConfigError, open_cache, panel_for, split_by_scene

    d = config.data
    if d.root is None:
        raise ConfigError("study panel: the run config has no data.root")
    if cache is None:
        cache = open_cache(d.root, cache_dir=d.cache_dir,
                           include_additional=d.include_additional)
    return panel_for(cache, split_by_scene(cache.records, d.val_fraction, d.split_seed).val)


def overlay_png(bundle_dir: Path, path: Path, threshold: float | None = None,
                cache: PatchCache | None = None) -> Path:
    """The study's hard-case panel (the same for every trial): false colour, ground truth,
    prediction at `threshold` (default the bundle's) coloured by TP/FP/FN. `cache`: the
    bundle's data, when the caller has it open (a trial: the cache it trained on).
    """
    import torch

    from cloudseg import ConfigError, PatchDataset, WindowPredictor, load_bundle, open_cache

    model, cfg = load_bundle(bundle_dir)
    if cfg.data.root is None:
        raise ConfigError(f"{bundle_dir}: its config.yaml has no data.root to draw patches from")
    if cache is None:
        cache = open_cache(cfg.data.root, cache_dir=cfg.data.cache_dir,
                           include_additional=cfg.data.include_additional)
    picks = np.asarray([p.row for p in study_panel(cfg, cache)], dtype=np.int64)
    threshold = cfg.train.threshold if threshold is None else threshold
    # Whole patches, not the training crop: a centred crop of a scene-edge patch can be all
    # no-data, and the models are fully convolutional.
    ds = PatchDataset(cache, picks, crop=None, augment=False, random_crop=False)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    masks = torch.stack([ds[i][1] for i in range(len(ds))])
    # cloudseg's inference path: on the CPU one patch at a time in channels_last (half the
    # time of one NCHW batch on this machine); six patches do not repay folding BatchNorm
    prob = WindowPredictor(model, cfg.train, device=cfg.train.device, fold=False)(images.numpy())
    pred = prob.astype(np.float64) > threshold
    truth = masks[:, 0].numpy().astype(bool)
    raw = images.to(torch.int32).numpy()
    colour = [_false_colour(r) for r in raw]
    rows = [panel_row(colour[i], truth[i], [pred[i]], raw[i].any(axis=0))
            for i in range(len(ds))]
    grid_png(rows, ("NIR-R-G", "ground truth", "prediction\nTP white · FP red · FN blue"), path)
    # The raw masks too, so the W&B mirror can log them with `masks=` (its mask viewer).
    save_overlay_masks(
        path.with_name(MASKS_FILENAME),
        np.stack([(c * 255).round().astype(np.uint8) for c in colour]),
        pred, truth, patch=[cache.records[i].name for i in picks],
    )
    return path


def has_images(stopped_early: bool, best_checkpoint: object) -> bool:
    """Whether a trial's run gets images: one that went to its end with a best checkpoint.
    A pruned run gets none: nothing exports it, the dashboard plots its intermediate values
    and its note holds the epoch table, and drawing cost more than a pruned fit.
    """
    return not stopped_early and best_checkpoint is not None


def render_trial_images(result: FitResult, out_dir: Path,
                        cache: PatchCache | None = None) -> dict[str, str]:
    """In the trial process (it has the data and the device): the overlay of the best
    checkpoint on the study's panel, its masks, and the checkpoint's path. The worker draws
    the learning curve meanwhile, from the history it has (`learning_curve_png`). `cache`:
    the one the trial trained on (not opened again).
    """
    if not has_images(result.stopped_early, result.best_checkpoint):
        return {}
    assert result.best_checkpoint is not None
    best = result.best_record
    rule = result.config.train.select_at  # the threshold the trial is scored at
    threshold = (best.thresholds[rule].threshold if rule != "fixed" and best.thresholds
                 else None)
    checkpoint = {"checkpoint": str(Path(result.best_checkpoint) / "model.safetensors")}
    try:
        overlay = overlay_png(Path(result.best_checkpoint), out_dir / "overlay.png", threshold,
                              cache)
    except Exception as exc:  # noqa: BLE001 - an image is a courtesy, never a failed trial
        import logging

        logging.getLogger(__name__).warning("no overlay for this trial: %s", exc)
        return checkpoint
    return {
        "overlay": str(overlay),
        MASKS_KEY: str(out_dir / MASKS_FILENAME),  # written beside it by overlay_png
        **checkpoint,
    }


def upload_trial_files(
    trial: optuna.Trial, store: FileSystemArtifactStore, files: dict[str, str]
) -> dict[str, str]:
    """Upload each file as an artifact of `trial`; returns name → artifact id."""
    from optuna.artifacts import upload_artifact

    from sweep.sqlite_file import disk_full_error, is_disk_full

    ids = {}
    for name, file_path in files.items():
        if Path(file_path).is_file():
            try:
                ids[name] = upload_artifact(
                    artifact_store=store, file_path=file_path, study_or_trial=trial
                )
            except OSError as err:  # the artifact folder's disk: stops the worker, one line
                if not is_disk_full(err):
                    raise
                where = getattr(store, "folder", None) or type(store).__name__
                raise disk_full_error(err, f"artifact folder {where}",
                                      "free some space and rerun"
                                      ) from None
    return ids


def download(store: FileSystemArtifactStore, artifact_id: str, dest: Path) -> Path:
    """Copy an artifact to `dest` (which must not exist); a missing one is one ExportError."""
    from optuna.artifacts import download_artifact

    from sweep.errors import ExportError

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(dest))
    except FileExistsError:
        raise
    except Exception as err:  # ArtifactNotFound, OSError, ...
        from sweep.sqlite_file import disk_full_error, is_disk_full

        if is_disk_full(err):  # the destination's disk, not the store
            raise disk_full_error(err, dest) from None
        where = getattr(store, "folder", None) or type(store).__name__
        raise ExportError(
            f"artifact {artifact_id} cannot be read from the artifact store {where} ({err}); "
            "the study's artifacts folder must be reachable from this machine"
        ) from None
    return dest

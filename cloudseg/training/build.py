"""run_training() = build_run() + fit(): one complete run from a RunConfig.

`build_run` turns the config into objects (data, split, subset, statistics, model, loss,
loaders); `fit` trains them and writes the bundles. The CLI (`cloudseg train`) and the sweep
objective both call `run_training`, so a trial and a hand-run config train exactly the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudseg.config import RunConfig
from cloudseg.cores import loader_workers
from cloudseg.errors import ConfigError
from cloudseg.training.results import FitResult

if TYPE_CHECKING:
    from torch import nn

    from cloudseg.data.cache import PatchCache
    from cloudseg.training.callbacks import Callback

DATA_ENV = "CLOUDSWEEP_DATA"


def resolve_data_root(config: RunConfig) -> Path:
    """`data.root`, else $CLOUDSWEEP_DATA; an error says how to point at a data set."""
    root = config.data.root or os.environ.get(DATA_ENV) or None
    if root is None:
        raise ConfigError(
            "data.root is not set: pass --data DIR (or set data.root in the config, or the "
            f"{DATA_ENV} environment variable) pointing at a 38-Cloud/95-Cloud root, "
            "or run `cloudseg synth DIR` to write a synthetic data set"
        )
    return Path(root)


def with_data_root(config: RunConfig, root: str | Path) -> RunConfig:
    """`config` with data.root replaced (the CLI's --data)."""
    return config.with_overrides({"data.root": str(root)}, "--data")


def _spread(indices: np.ndarray, cap: int | None) -> np.ndarray:
    """At most `cap` indices, evenly spaced, so a capped validation set still spans its scenes."""
    if cap is None or len(indices) <= cap:
        return indices
    return indices[np.linspace(0, len(indices) - 1, cap).round().astype(np.int64)]


@dataclass(frozen=True)
class DataSummary:
    """Which patches a run trained and validated on, and the statistics drawn from them."""

    n_train: int
    n_val: int
    train_scenes: list[str]
    val_scenes: list[str]
    pos_weight: float | None  # the numeric BCE weight ("auto" resolved), None when unused
    data_on_device: bool  # the whole subset was copied to the device once

    def as_dict(self) -> dict[str, Any]:
        """The form FitResult.extras carries (and a trial stores)."""
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "scenes": {"train": self.train_scenes, "val": self.val_scenes},
            "pos_weight": self.pos_weight,
            "data_on_device": self.data_on_device,
        }


@dataclass(frozen=True)
class BuiltRun:
    """Everything `fit` takes, built from one RunConfig by `build_run`."""

    config: RunConfig  # resolved: data root, numeric pos_weight, band statistics
    model: nn.Module
    loss_fn: nn.Module
    train_loader: Iterable
    val_loader: Iterable
    val_scenes: list[str]  # scene of each validation item: per-scene figures every epoch
    data: DataSummary
    # (y0, y1, x0, x1) of each validation item inside its scene (train.ignore_nodata: padding)
    val_extents: np.ndarray | None = None


def run_training(
    config: RunConfig,
    *,
    callbacks: Sequence[Callback] = (),
    out_dir: str | Path | None = None,
    progress: Any = False,
    cache: PatchCache | None = None,
) -> FitResult:
    """Train one model as `config` says: `build_run`, then `fit` (which writes the bundles to
    `out_dir`). `progress`: False (silent), True (cache building messages only) or a rich
    Progress / callable passed to `fit` for the step bar.

    The returned FitResult.config is the resolved config (data root, numeric pos_weight, band
    statistics), ready to be written as the config.yaml of a bundle. `cache`: see `build_run`.
    """
    from cloudseg.training.loop import fit

    run = build_run(config, progress=progress is True, cache=cache)
    result = fit(
        run.model, run.loss_fn, run.train_loader, run.val_loader, run.config,
        callbacks=callbacks, checkpoint_dir=out_dir,
        progress=None if isinstance(progress, bool) else progress, val_scenes=run.val_scenes,
        val_extents=run.val_extents,
    )
    return replace(result, extras={**result.extras, **run.data.as_dict()})


def open_run_cache(config: RunConfig, *, progress: bool = False) -> PatchCache:
    """The packed cache `config` trains on (data.root, else $CLOUDSWEEP_DATA; data.cache_dir),
    built first when missing. Opening costs a stat of every training file (the fingerprint)
    and reading the index: whoever needs it several times (a trial: training, then its
    overlay) opens it once and passes it on.
    """
    from cloudseg.data import open_cache

    d = config.data
    return open_cache(resolve_data_root(config).expanduser().absolute(), cache_dir=d.cache_dir,
                      progress=progress, include_additional=d.include_additional)


def build_run(config: RunConfig, *, progress: bool = False,
              cache: PatchCache | None = None) -> BuiltRun:
    """Data, split, subset, statistics, model, loss and loaders for `config`; `progress` prints
    the cache-building messages. `cache`: the one `open_run_cache(config)` returns, when the
    caller has it open already. Every config problem is a ConfigError before any training.
    """
    from cloudseg.losses import build_loss
    from cloudseg.models import build_model
    from cloudseg.training.loop import seed_everything

    _check_sizes(config)
    root = resolve_data_root(config).expanduser().absolute()
    config = config.with_overrides({"data.root": str(root)}, "resolved config")
    cache = cache if cache is not None else open_run_cache(config, progress=progress)
    train_idx, val_idx = _split(cache, config, root)
    config, pos_weight = _statistics(config, cache, train_idx)

    # Seed before building the model so its initial weights follow train.seed too.
    seed_everything(config.train.seed)
    model = build_model(config.model)
    loss_fn = build_loss(config.loss, pos_weight_auto=pos_weight)
    train_loader, val_loader, on_device = _loaders(config, cache, train_idx, val_idx)

    scene_of = [r.id.scene for r in cache.records]
    extents = None
    if config.train.ignore_nodata == "padding":
        from cloudseg.data.layout import find_layout
        from cloudseg.scenes.extent import extent_rects, scene_sizes

        ids = [cache.records[i].id for i in val_idx]
        sizes = scene_sizes(find_layout(root).scene_gts, [pid.scene for pid in ids])
        extents = extent_rects(ids, sizes)
    return BuiltRun(
        config=config, model=model, loss_fn=loss_fn, train_loader=train_loader,
        val_loader=val_loader, val_scenes=[scene_of[i] for i in val_idx],
        data=DataSummary(
            n_train=int(len(train_idx)), n_val=int(len(val_idx)),
            train_scenes=sorted({scene_of[i] for i in train_idx}),
            val_scenes=sorted({scene_of[i] for i in val_idx}),
            pos_weight=pos_weight, data_on_device=on_device,
        ),
        val_extents=extents,
    )


def _check_sizes(config: RunConfig) -> None:
    """Fail on a model/crop mismatch or a capped scene before any data work."""
    from cloudseg.models import check_input_size

    dcfg = config.data
    by_scene = config.train.val_metric == "scene"
    if by_scene and dcfg.max_val_patches is not None:
        raise ConfigError(
            f"data.max_val_patches: train.val_metric 'scene' scores whole validation scenes and "
            f"a capped scene is not a scene; set it to null (got {dcfg.max_val_patches})"
        )
    if config.train.ignore_nodata == "padding" and not by_scene:
        raise ConfigError("train.ignore_nodata: 'padding' (the 38-Cloud protocol's pixels) "
                          "scores whole validation patches; it needs train.val_metric 'scene'")
    check_input_size(config.model.name, dcfg.crop or 384)
    if by_scene:
        check_input_size(config.model.name, 384)  # validation sees whole patches


def _split(cache: PatchCache, config: RunConfig, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Training subset and validation indices.

    Validation scenes are fixed by split_seed (the same for every trial); the training subset
    is a stratified resample that the sweep redraws via subset_seed.
    """
    from cloudseg.data import resample, split_by_scene

    dcfg = config.data
    split = split_by_scene(cache.records, dcfg.val_fraction, dcfg.split_seed)
    train_idx = resample(
        cache.records, split.train, dcfg.train_fraction, dcfg.subset_seed,
        drop_empty=dcfg.drop_empty,
    )
    val_idx = _spread(np.asarray(split.val), dcfg.max_val_patches)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"{root}: the split leaves {len(train_idx)} training and {len(val_idx)} validation "
            "patches; check data.val_fraction, data.train_fraction and data.drop_empty"
        )
    return train_idx, val_idx


def _statistics(
    config: RunConfig, cache: PatchCache, train_idx: np.ndarray
) -> tuple[RunConfig, float | None]:
    """`config` with pos_weight "auto" and band statistics filled in, and the numeric pos_weight.
    Statistics come from the training subset only, never from validation patches.
    """
    from cloudseg.data import subset_moments

    pos_weight = None
    need_bands = config.train.normalisation == "band-stats" and config.train.band_mean is None
    if config.loss.pos_weight == "auto" or need_bands:
        stats = subset_moments(cache, train_idx)
        if config.loss.pos_weight == "auto":
            if not stats.cloud_pixels:
                raise ConfigError(
                    f"loss.pos_weight: 'auto' needs cloud pixels, but the training subset of "
                    f"{len(train_idx)} patches has none; give a number instead"
                )
            pos_weight = float(stats.pos_weight)
            config = config.with_overrides({"loss.pos_weight": pos_weight}, "resolved config")
        if need_bands:
            mean = tuple(float(v) for v in stats.band_mean)
            std = tuple(float(v) for v in stats.band_std)
            if not all(np.isfinite(v) and v > 0 for v in std):
                raise ConfigError(f"train.normalisation: band-stats gave std {std}; "
                                  "the training subset has no valid pixels in some band")
            config = config.with_overrides(
                {"train.band_mean": mean, "train.band_std": std}, "resolved config")
    elif isinstance(config.loss.pos_weight, float):
        pos_weight = config.loss.pos_weight
    return config, pos_weight


def _loaders(
    config: RunConfig, cache: PatchCache, train_idx: np.ndarray, val_idx: np.ndarray
) -> tuple[Iterable, Iterable, bool]:
    """Training and validation loaders, and whether they serve batches from the device."""
    import torch

    from cloudseg.data import PatchDataset
    from cloudseg.data.device_batches import DeviceBatches, fits
    from cloudseg.training.device import select_device

    dcfg, crop, seed = config.data, config.data.crop, config.train.seed
    train_ds = PatchDataset(cache, train_idx, crop=crop, augment=dcfg.augment, random_crop=True,
                            seed=seed)
    # Scene scoring validates whole patches: their counts add up to the stitched scene's.
    by_scene = config.train.val_metric == "scene"
    val_ds = PatchDataset(cache, val_idx, crop=None if by_scene else crop, augment=False,
                          random_crop=False)
    setup = select_device(config.train)
    batch = config.optim.batch_size
    drop_last = len(train_ds) > batch  # no tiny last batch for BatchNorm
    on_device = dcfg.on_device == "always" or (
        dcfg.on_device == "auto"
        and fits(len(train_idx) + len(val_idx), setup.device, dcfg.device_share)
    )
    if on_device:  # copied to the device once; batches, crops and flips are drawn there
        train_loader: Iterable = DeviceBatches(
            cache, train_idx, setup.device, batch, crop=crop, augment=dcfg.augment,
            random_crop=True, shuffle=True, drop_last=drop_last, seed=seed,
        )
        val_loader: Iterable = DeviceBatches(
            cache, val_idx, setup.device, batch, crop=val_ds.crop, random_crop=False,
            shuffle=False,
        )
        return train_loader, val_loader, True
    # Workers are not persistent: they must see PatchDataset.set_epoch (fresh crops). At most
    # one per core this process may run on (a sweep bounds it to the trial's share first).
    workers, pin = loader_workers(config.train.num_workers), setup.is_cuda
    # Whole-batch fetches (PatchDataset.loader): the default collate's batches, no stacking.
    train_loader = train_ds.loader(
        batch, shuffle=True, drop_last=drop_last, num_workers=workers, pin_memory=pin,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = val_ds.loader(batch, shuffle=False, num_workers=workers, pin_memory=pin)
    return train_loader, val_loader, False

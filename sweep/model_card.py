"""The model card (README.md) of an exported bundle: the facts of the run, from the trial's records.

What a user of the weights needs and what the study knows: the input contract (band order,
dtype, normalisation statistics, patch size, threshold), the resolved loss parameters (as
training used them, defaults filled in), the data and its scene split, the validation metrics
under the protocol used next to the trivial all-cloud predictor on the same pixels, and what
the model was not tested on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from cloudseg import ConfigError
from sweep.card_selection import confirmation_lines, threshold_lines
from sweep.final.card import test_lines
from sweep.hub_card import load_lines
from sweep.record import failure_of
from sweep.records import metric_label

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from cloudseg import ModelConfig, RunConfig

BANDS = ("red", "green", "blue", "nir")  # channel order of every input (cloudseg.data.BANDS)


def all_cloud_baseline(validation: dict[str, Any] | None) -> dict[str, float] | None:
    """The trivial predictor "every valid pixel is cloud" on the same validation pixels, from
    the best epoch's confusion counts: its TP are the cloud pixels, its FP the clear ones.
    """
    if not validation or not all(k in validation for k in ("tp", "fp", "fn", "tn")):
        return None
    cloud = float(validation["tp"] + validation["fn"])
    clear = float(validation["fp"] + validation["tn"])
    total = cloud + clear
    if total <= 0:
        return None
    return {
        "iou": cloud / total,
        "dice": 2 * cloud / (2 * cloud + clear) if cloud else 0.0,
        "precision": cloud / total,
        "recall": 1.0 if cloud else 0.0,
        "specificity": 0.0,
        "accuracy": cloud / total,
    }



def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.4g}"
    if v is None:
        return "—"
    return str(v)


def _numbers(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def scene_baseline(config: RunConfig) -> float | None:
    """The all-cloud predictor's scene-mean IoU on the validation scenes, whole patches, the
    run's no-data rule: what `scene_iou` means for a model that calls every pixel cloud. Needs
    the data (None when it is not reachable from here).
    """
    import numpy as np

    from cloudseg import SceneMeter, open_cache, split_by_scene

    d = config.data
    if d.root is None:
        return None
    try:
        cache = open_cache(d.root, cache_dir=d.cache_dir, include_additional=d.include_additional)
    except Exception:  # noqa: BLE001 - the data may live on another machine
        return None
    rows = np.asarray(split_by_scene(cache.records, d.val_fraction, d.split_seed).val)
    meter = SceneMeter(config.train.threshold)
    for start in range(0, len(rows), 32):
        batch = rows[start:start + 32]
        target = np.asarray(cache.masks[batch]).astype(bool)
        valid = (np.asarray(np.asarray(cache.images[batch]).any(axis=1))
                 if config.train.ignore_nodata else None)
        scenes = [cache.records[i].id.scene for i in batch]
        meter.update(scenes, np.ones_like(target), target, valid)
    return meter.iou if meter.per_scene else None


def resolved_loss(config: RunConfig) -> list[tuple[str, Any]]:
    """The loss's parameters as training used them (defaults filled in, pos_weight numeric)."""
    from cloudseg import resolve_loss_params

    try:
        params = resolve_loss_params(config.loss)
    except ConfigError:  # a config from an older release: show what it says
        params = {k: v for k, v in config.loss.model_dump().items()
                  if k != "name" and v is not None}
    rows: list[tuple[str, Any]] = [("loss", f"`{config.loss.name}`")]
    rows += [(f"loss.{k}", "none (unweighted)" if v is None else v)
             for k, v in sorted(params.items())]
    return rows


def _input_contract(config: RunConfig) -> list[tuple[str, Any]]:
    from cloudseg import MODELS

    t, d = config.train, config.data
    if t.normalisation == "band-stats" and t.band_mean is not None and t.band_std is not None:
        norm = (f"`band-stats`: (x − mean) / std per band; mean ({_numbers(t.band_mean)}), "
                f"std ({_numbers(t.band_std)}), measured on the training subset")
    elif t.normalisation == "band-stats":
        norm = "`band-stats` (statistics not recorded)"
    else:
        norm = "`max`: x / 65535"
    model = MODELS.get(config.model.name)
    crop = d.crop or 384
    return [
        ("bands (channel order)", ", ".join(f"{i}: {b}" for i, b in enumerate(BANDS))),
        ("dtype and units", "uint16 digital numbers as stored in the 38-Cloud patch TIFFs "
                            "(Landsat 8), unscaled: not reflectance"),
        ("no-data", "a pixel whose four bands are all 0 (scene margins)"
                    + ("; left out of every metric" if t.ignore_nodata is True else
                       "; scored, grid padding left out (the 38-Cloud protocol's pixels)"
                       if t.ignore_nodata == "padding" else "")),
        ("normalisation", norm),
        ("patch size", f"384 × 384 (38-Cloud patches; trained on {crop} px crops); any side "
                       f"that is a multiple of {model.multiple} and ≥ {model.min_size} works"),
        ("output", "one logit per pixel; sigmoid → probability of cloud"),
        ("threshold", f"cloud where probability > {t.threshold:g}"),
    ]


def _protocol(config: RunConfig, data: dict[str, Any], n_scenes: int | None) -> str:
    d = config.data
    scenes = (f" of {n_scenes} validation scene{'s' if n_scenes > 1 else ''}" if n_scenes
              else "")
    n_val = data.get("n_val", "?")
    if config.train.val_metric == "scene":
        return (f"Protocol: every whole 384 px patch{scenes} ({n_val} patches); IoU per scene "
                "averaged over scenes (`scene_iou`, the 38-Cloud figure), and the pixel counts "
                "pooled over all of them for the other rows.")
    crop = f"centred {d.crop} px crops of " if d.crop and d.crop < 384 else ""
    cap = (f", evenly spread and capped at data.max_val_patches = {d.max_val_patches}"
           if d.max_val_patches else "")
    return (f"Protocol: pixels pooled over {crop}{n_val} validation patches{scenes}{cap}; "
            "not the per-scene 38-Cloud protocol (run `cloudseg predict` and `cloudseg "
            "evaluate` for that).")


def _metrics_table(val: dict[str, Any], base: dict[str, float] | None) -> str:
    names = (("iou", "IoU"), ("dice", "Dice (F1)"), ("precision", "precision"),
             ("recall", "recall"), ("specificity", "specificity"), ("accuracy", "accuracy"))
    lines = ["| metric | this model | all-cloud baseline |", "|---|---|---|"]
    if "scene_iou" in val:
        base_scene = (base or {}).get("scene_iou")
        lines.append(f"| scene IoU (mean over scenes) | {_fmt(val['scene_iou'])} | "
                     f"{_fmt(base_scene)} |")
    for key, label in names:
        if key in val:
            lines.append(f"| {label} | {_fmt(val[key])} | {_fmt((base or {}).get(key))} |")
    return "\n".join(lines)


def _scene_list(names: list[str] | None) -> str:
    if not names:
        return "not recorded"
    return f"{len(names)}: " + ", ".join(f"`{n}`" for n in names)


def model_card(
    study: optuna.Study,
    trial: FrozenTrial,
    config: RunConfig,
    metrics: dict[str, Any],
    images: dict[str, str],
) -> str:
    """The card's text (README.md below the Hub metadata, `sweep.hub_card`): what the trial is,
    how it was chosen, how well it does.
    """
    val = metrics.get("validation") or {}
    data = metrics.get("data") or {}
    scenes = metrics.get("scenes") or {}
    spec = study.user_attrs.get("spec") or {}
    n_complete = len([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                      if failure_of(t) is None])
    n_pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    considered = (f"{n_complete + n_pruned} finished trials ({n_complete} complete, "
                  f"{n_pruned} pruned)" if n_pruned else f"{n_complete} complete trial(s)")
    epochs = config.train.epochs
    counts = ", ".join(f"{k.upper()} {val[k]}" for k in ("tp", "fp", "fn", "tn") if k in val)
    opt = config.optim
    test = metrics.get("test")  # a final fit's test-split figures (sweep finalize)
    parts = [
        f"# Cloud segmentation model — study `{study.study_name}`, trial {trial.number}",
        "",
        (f"Selected as the best of {considered} of study `{study.study_name}` by "
         if test is None else "A final fit (below), scored on its validation scenes by ")
        + f"{metric_label(metrics['metric'])} = {_fmt(trial.value)} at epoch "
        f"{metrics['best_epoch']} of {epochs} (the weights are that epoch's).",
        "",
        *(confirmation_lines(metrics.get("confirmation")) if test is None else []),
        *test_lines(test),
        *threshold_lines(metrics["threshold"]),
        "## Input contract",
        _table(_input_contract(config)),
        "",
        "## Model and training",
        _table([
            ("architecture", f"`{config.model.name}`{_encoder_note(config.model)}, from scratch "
                             "(no pretrained weights)"),
            *resolved_loss(config),
            ("optimiser", f"AdamW, lr {opt.lr:.3g}, weight decay {opt.weight_decay:g}, "
                          f"schedule `{opt.schedule}`, warm-up {opt.warmup_epochs} epoch(s), "
                          f"gradient clip {opt.grad_clip}"),
            ("batch size", opt.batch_size),
            ("epochs", f"{epochs}" + (f", at most {config.train.max_steps_per_epoch} batches "
                                      "each" if config.train.max_steps_per_epoch else "")),
            ("augmentation", "flips and 90° rotations" if config.data.augment else "none"),
            ("seed", config.train.seed),
        ]),
        "",
        "## Searched parameters",
        _table([(k, f"{v:.4g}" if isinstance(v, float) else v)
                for k, v in sorted(trial.params.items())], ("parameter", "value")),
        "",
        "## Data and split",
        _table([
            ("data root", config.data.root),
            ("split", f"whole scenes held out: data.val_fraction {config.data.val_fraction}, "
                      f"data.split_seed {config.data.split_seed} (the same for every trial)"),
            ("training subset", f"data.train_fraction {config.data.train_fraction} of the "
                                f"training patches, data.subset_seed {config.data.subset_seed}"),
            ("training patches", data.get("n_train")),
            ("validation patches", data.get("n_val")),
            ("training scenes", _scene_list(scenes.get("train"))),
            ("validation scenes", _scene_list(scenes.get("val"))),
        ]),
        "",
        f"## Validation metrics (epoch {metrics['best_epoch']})",
        _protocol(config, data, len(scenes.get("val") or []) or None),
        "",
        _metrics_table(val, metrics.get("baseline_all_cloud")),
        "",
        f"Pixel counts: {counts}. The all-cloud baseline calls every valid pixel cloud; on the "
        "same pixels it scores the cloud fraction as IoU and precision, and recall 1.",
        "",
        "## Not tested",
        *(["- No test-split scene was scored. The figures above come from the validation "
           f"scenes that also chose this trial among {n_complete + n_pruned}, so they flatter "
           "it; score the test split with `cloudseg predict` and `cloudseg evaluate` (38-Cloud "
           "protocol)."] if test is None else []),
        "- Scenes other than those listed: other sensors, regions, seasons, snow and ice, "
        "and other processing levels than the 38-Cloud patches.",
        f"- Thresholds other than {config.train.threshold:g}, test-time augmentation "
        "(`--tta`) and overlapping windows (`--overlap`).",
    ]
    if _synthetic(spec, config):
        parts.append("- Real clouds at all: it was trained and validated on the synthetic data "
                     "set this study's spec writes (`cloudseg synth`), not on Landsat scenes.")
    parts.append("")
    if "curve" in images:
        parts += ["## Learning curve", f"![learning curve]({images['curve']})", ""]
    if "overlay" in images:
        parts += ["## Validation overlay (the weights above)",
                  f"![overlay]({images['overlay']})", ""]
    parts += [
        *load_lines(config),
        "## Reproduce",
        "```",
        "cloudseg train config.yaml   # retrain from this config",
        "```",
        "",
        "## Identity and provenance",
        _table([("study", study.study_name), ("trial", trial.number),
                ("weights sha256", f"`{metrics.get('weights_sha256')}`"),
                ("subset seed", metrics.get("subset_seed")),
                ("fit seconds", metrics.get("fit_seconds")),
                *sorted(metrics["versions"].items())]),
        "",
    ]
    return "\n".join(parts)


def _synthetic(spec: dict[str, Any], config: RunConfig) -> bool:
    """Whether the data root is the synthetic tree a spec with `synthesize_if_missing` writes."""
    if not spec.get("synthesize_if_missing") or not spec.get("data") or config.data.root is None:
        return False
    return Path(config.data.root).as_posix().endswith(Path(spec["data"]).as_posix())


def _encoder_note(model_cfg: ModelConfig) -> str:
    """`smp` models name their encoder; the from-scratch U-Nets have none (but a base width)."""
    from cloudseg import MODELS, PAPER_WIDTH

    if MODELS.get(model_cfg.name).uses_encoder:
        return f" (encoder `{model_cfg.encoder}`)"
    width = PAPER_WIDTH if model_cfg.base_width is None else model_cfg.base_width
    return f" (base width {width})"

"""Best trials → a self-contained bundle: config.yaml (runnable by `cloudseg train`, loadable by
`cloudseg.checkpoint.load_bundle`), model.safetensors, metrics.json and MODEL_CARD.md."""

from __future__ import annotations

import contextlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from cloudseg.errors import ConfigError

PACKAGES = ("cloudsweep", "torch", "segmentation-models-pytorch", "optuna", "numpy", "rasterio")


def ranked_trials(study, top: int | None = None) -> list:
    """COMPLETE trials without a failure class (OOM trials carry a worst value), best first."""
    from optuna.trial import TrialState

    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("failure") and t.value is not None
    ]
    done.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    return done if top is None else done[:top]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def export_trial(study, trial, dest: Path, store) -> Path:
    """Write the bundle of `trial` to `dest` (created; existing files are replaced)."""
    from cloudseg.config import parse_run_config
    from sweep.artifacts import download

    ids = trial.user_attrs.get("artifacts", {})
    if "checkpoint" not in ids:
        raise ConfigError(
            f"trial {trial.number} of {study.study_name!r} has no checkpoint artifact"
        )
    dest.mkdir(parents=True, exist_ok=True)
    config = parse_run_config(trial.user_attrs["config"], f"trial {trial.number} config")
    (dest / "config.yaml").write_text(config.to_yaml())
    download(store, ids["checkpoint"], dest / "model.safetensors")
    images = {}
    for name, file in (("curve", "learning_curve.png"), ("overlay", "overlay.png")):
        if name in ids:
            download(store, ids[name], dest / file)
            images[name] = file
    spec = study.user_attrs.get("spec", {})
    metric = spec.get("metric", "iou")
    metrics = {
        "study": study.study_name,
        "trial": trial.number,
        "metric": metric,
        "value": trial.value,
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "validation": trial.user_attrs.get("metrics"),
        "history": trial.user_attrs.get("history"),
        "params": trial.params,
        "subset_seed": trial.user_attrs.get("subset_seed"),
        "fit_seconds": trial.user_attrs.get("fit_seconds"),
        "data": trial.user_attrs.get("data"),
        "versions": _versions(),
    }
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (dest / "MODEL_CARD.md").write_text(model_card(study, trial, config, metrics, images))
    return dest


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(study, trial, config, metrics: dict[str, Any], images: dict[str, str]) -> str:
    val = metrics["validation"] or {}
    data = metrics["data"] or {}
    scores = [(k, val[k]) for k in ("iou", "dice", "precision", "recall", "specificity",
                                    "accuracy") if k in val]
    counts = [(k, val[k]) for k in ("tp", "fp", "fn", "tn") if k in val]
    parts = [
        f"# Cloud segmentation model — study `{study.study_name}`, trial {trial.number}",
        "",
        f"Selected by validation {metrics['metric']} = {_fmt(trial.value)} "
        f"(best epoch {metrics['best_epoch']} of {config.train.epochs}). Metrics pool TP/FP/FN "
        "over every validation pixel (not the per-scene 38-Cloud protocol; run `cloudseg "
        "evaluate` for that).",
        "",
        "## Model",
        f"`{config.model.name}`{_encoder_note(config.model)}, loss `{config.loss.name}`, "
        f"lr {config.optim.lr:.3g}, batch size {config.optim.batch_size}, "
        f"crop {config.data.crop}, normalisation `{config.train.normalisation}`.",
        "",
        "## Searched parameters",
        _table(sorted(trial.params.items())),
        "",
        "## Validation metrics (best epoch)",
        _table(scores + counts),
        "",
        "## Data",
        _table([
            ("root", config.data.root), ("validation fraction (scenes)", config.data.val_fraction),
            ("split seed", config.data.split_seed),
            ("training fraction", config.data.train_fraction),
            ("subset seed", config.data.subset_seed), ("training patches", data.get("n_train")),
            ("validation patches", data.get("n_val")), ("pos_weight", data.get("pos_weight")),
        ]),
        "",
    ]
    if "curve" in images:
        parts += ["## Learning curve", f"![learning curve]({images['curve']})", ""]
    if "overlay" in images:
        parts += ["## Validation overlay", f"![overlay]({images['overlay']})", ""]
    parts += [
        "## Reproduce",
        "```",
        "cloudseg train config.yaml   # retrain from this config",
        "```",
        "Load the weights with `cloudseg.checkpoint.load_bundle(\"<this folder>\")`.",
        "",
        "## Provenance",
        _table([("study", study.study_name), ("study id", study._study_id),
                ("trial", trial.number), ("trial id", trial._trial_id),
                *sorted(metrics["versions"].items())]),
        "",
    ]
    return "\n".join(parts)


def _encoder_note(model_cfg) -> str:
    """smp models name their encoder; the from-scratch U-Nets have none (but a base width)."""
    from cloudseg.models import MODELS, PAPER_WIDTH

    if MODELS.get(model_cfg.name).uses_encoder:
        return f" (encoder `{model_cfg.encoder}`)"
    width = PAPER_WIDTH if model_cfg.base_width is None else model_cfg.base_width
    return f" (base width {width})"

"""Best trials → a self-contained bundle: config.yaml (runnable by `cloudseg train`, loadable by
`cloudseg.training.checkpoint.load_bundle`), model.safetensors, metrics.json, README.md (the model
card, with the Hugging Face Hub's metadata) and, for smp architectures, config.json (what
`segmentation_models_pytorch.from_pretrained(folder)` reads).

Exports are atomic and idempotent: the bundle is written to a temporary folder beside the
destination, checked (`check_bundle`: config, weights and metrics.json belong together) and
renamed into place, so the destination is the old bundle or the new one, never a mix. Exporting
again replaces a bundle whole (the same trial or another); a folder holding anything an export
does not write is left alone, with an error. metrics.json names the bundle's study, trial and the
sha256 of its weights, which `load_bundle` checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
from importlib import metadata
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import DiskFullError, ExportError
from sweep.export_swap import fsync_tree, swap_into_place, temporary_bundle
from sweep.hub_card import CARD_FILE, HUB_CONFIG_FILE, hub_card, smp_config
from sweep.model_card import all_cloud_baseline, model_card, scene_baseline
from sweep.record import TrialRecord, failure_of, load, stored_form
from sweep.sqlite_file import disk_full_error, is_disk_full

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.trial import FrozenTrial

    from cloudseg import RunConfig

PACKAGES = ("cloudsweep", "torch", "segmentation-models-pytorch", "optuna", "numpy", "rasterio")
IMAGES = (("curve", "learning_curve.png"), ("overlay", "overlay.png"))
# Everything an export writes: a folder holding only these (or nothing) may be replaced.
# MODEL_CARD.md: the card's name before it became the Hub's README.md.
BUNDLE_FILES = frozenset({"config.yaml", "model.safetensors", "metrics.json", CARD_FILE,
                          HUB_CONFIG_FILE, "MODEL_CARD.md"} | {file for _, file in IMAGES})


def ranked_trials(study: optuna.Study, top: int | None = None) -> list[FrozenTrial]:
    """COMPLETE trials without a failure class (OOM trials carry a worst value), best first."""
    from optuna.trial import TrialState

    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if failure_of(t) is None and t.value is not None
    ]
    done.sort(key=attrgetter("value"), reverse=study.direction.name == "MAXIMIZE")
    return done if top is None else done[:top]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


# ---- the destination --------------------------------------------------------------------------
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a spec's `name`: one path component


def default_destination(study: str) -> Path:
    """`exports/<study>`, for a study name that is one safe path component; a name that would
    lead elsewhere (`../x`, `/abs`, a hidden or empty one) is refused: give --export DIR.
    """
    if not SAFE_NAME.fullmatch(study) or len(study) > 255:
        raise ExportError(f"study {study!r}: its name is not a safe folder name (letters, digits, "
                          "_ . - and no leading dot or slash), so there is no exports/<study> "
                          "for it; give the folder: --export DIR")
    return Path("exports") / study


def check_destination(dest: Path) -> None:
    """`dest` may be absent, an empty folder or a bundle; anything else is not ours to replace."""
    if not dest.exists() and not dest.is_symlink():
        return
    if dest.is_symlink() or not dest.is_dir():
        raise ExportError(f"{dest}: exists and is not a folder; export to a folder")
    foreign = sorted(p.name for p in dest.iterdir() if p.name not in BUNDLE_FILES)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4
                                          else "")
        raise ExportError(
            f"{dest}: not replaced: it holds files an export does not write ({shown}); export "
            "to a new or empty folder, or to an earlier export's folder"
        )


# ---- the bundle -------------------------------------------------------------------------------
def bundle_threshold(config: RunConfig, record: TrialRecord, rule: str) -> dict[str, Any]:
    """The threshold the bundle's masks use: the study's rule applied to this trial's best
    epoch, with the validation figures at each threshold that epoch recorded.
    """
    from cloudseg import OFFICIAL_THRESHOLD

    val = record.metrics or {}
    tuned = val.get("tuned_threshold")
    value = {"fixed": config.train.threshold, "official": OFFICIAL_THRESHOLD,
             "tuned": float(tuned) if isinstance(tuned, int | float) else None}[rule]
    if value is None:  # a trial recorded before thresholds were: its fixed one
        rule, value = "fixed", config.train.threshold
    figures = {}
    for name, suffix in ((f"{config.train.threshold:g}", ""), ("12/255", "_official"),
                         (f"tuned ({val.get('tuned_threshold', 0):.4f})", "_tuned")):
        if f"iou{suffix}" in val:
            figures[name] = {k: val[f"{k}{suffix}"] for k in ("iou", "precision", "recall")}
    return {"rule": rule, "value": float(value), "figures": figures}


def export_trial(
    study: optuna.Study,
    trial: FrozenTrial,
    dest: Path,
    store: FileSystemArtifactStore,
    confirmation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle of `trial` to `dest`, atomically; a bundle already there is replaced.
    `confirmation` (sweep.ranking) records its config's confirmation runs and #1 vs #2;
    `extra` adds entries to metrics.json (a final fit's `test` figures, which the card shows).
    """
    record = load(trial)
    if record.artifacts.checkpoint is None:
        raise ExportError(
            f"trial {trial.number} of {study.study_name!r} has no checkpoint artifact"
        )
    dest = Path(dest).expanduser().absolute()
    check_destination(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with temporary_bundle(dest) as tmp:
            _write_bundle(study, trial, record, tmp, store, confirmation, extra)
            swap_into_place(tmp, dest)
    except (OSError, DiskFullError) as err:
        if isinstance(err, DiskFullError) or is_disk_full(err):
            raise disk_full_error(None, dest, "nothing was replaced (a bundle there is kept); "
                                  "free some space and export again") from None
        raise ExportError(f"{dest.parent}: cannot write the export there "
                          f"({err.strerror or err})") from None
    return dest


def _write_bundle(study: optuna.Study, trial: FrozenTrial, record: TrialRecord, tmp: Path,
                  store: FileSystemArtifactStore, confirmation: dict[str, Any] | None,
                  extra: dict[str, Any] | None = None) -> None:
    """Write and check the bundle in `tmp`, flushed to the disk."""
    from cloudseg import bundle_yaml, check_bundle, file_sha256
    from sweep.artifacts import download
    from sweep.study.spec import study_threshold_rule

    ids = record.artifacts.by_name()
    checkpoint = record.artifacts.checkpoint
    assert checkpoint is not None  # checked by export_trial
    config = record.run_config(f"trial {trial.number} config")
    threshold = bundle_threshold(config, record, study_threshold_rule(study.user_attrs))
    train = config.train.model_copy(update={"threshold": threshold["value"]})
    config = config.model_copy(update={"train": train})  # predict's masks use it
    (tmp / "config.yaml").write_text(bundle_yaml(config))
    weights = download(store, checkpoint, tmp / "model.safetensors")
    digest = file_sha256(weights)
    recorded = record.weights_sha256
    if recorded and recorded != digest:
        raise ExportError(
            f"trial {trial.number} of {study.study_name!r}: the stored checkpoint artifact "
            f"{checkpoint} has sha256 {digest[:12]}..., the trial recorded "
            f"{recorded[:12]}...: the artifact store was changed"
        )
    images = {}
    for name, file in IMAGES:
        if name in ids:
            download(store, ids[name], tmp / file)
            images[name] = file
    metrics = bundle_metrics(study, trial, record, config, digest)
    metrics.update(threshold=threshold, confirmation=confirmation, **(extra or {}))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    body = model_card(study, trial, config, metrics, images)
    hub_card(f"{study.study_name}-trial-{trial.number}", config, metrics, body).save(
        tmp / CARD_FILE)
    hub_config = smp_config(config)
    if hub_config is not None:
        (tmp / HUB_CONFIG_FILE).write_text(json.dumps(hub_config, indent=2) + "\n")
    check_bundle(tmp)  # never put a bundle in place that load_bundle would refuse
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 is not what a plain mkdir gives
    fsync_tree(tmp)


def bundle_metrics(
    study: optuna.Study, trial: FrozenTrial, record: TrialRecord, config: RunConfig, digest: str
) -> dict[str, Any]:
    """metrics.json: the bundle's identity (study, trial, weights digest) and what the trial
    recorded (value, best epoch, validation figures, history, data, scenes), with the
    all-cloud baseline on the same pixels.
    """
    from cloudseg import DIGEST_KEY

    metrics = {
        "study": study.study_name,
        "trial": trial.number,
        DIGEST_KEY: digest,
        "metric": study.user_attrs.get("spec", {}).get("metric", "iou"),
        "value": trial.value,
        "best_epoch": record.best_epoch,
        "validation": record.metrics,
        "baseline_all_cloud": all_cloud_baseline(record.metrics),
        "history": [entry.as_dict() for entry in record.history] or None,
        "params": trial.params,
        "subset_seed": record.subset_seed,
        "fit_seconds": record.timings.fit_seconds,
        "data": stored_form(record.data),
        "versions": _versions(),
    }
    if config.train.val_metric == "scene" and metrics["baseline_all_cloud"] is not None:
        metrics["baseline_all_cloud"]["scene_iou"] = scene_baseline(config)
    scenes = trial_scenes(record, config)
    if scenes is not None:
        metrics["scenes"] = scenes
    return metrics


def trial_scenes(record: TrialRecord, config: RunConfig) -> dict[str, list[str]] | None:
    """Training and validation scene lists: as the trial recorded them, else recomputed from
    the data (the split is a function of the data, data.val_fraction and data.split_seed).
    """
    recorded = record.scenes
    if recorded is not None and recorded.val:
        return {"train": list(recorded.train), "val": list(recorded.val)}
    try:
        from cloudseg import open_cache, resample, split_by_scene

        d = config.data
        if d.root is None:
            return None
        cache = open_cache(d.root, cache_dir=d.cache_dir, include_additional=d.include_additional)
        split = split_by_scene(cache.records, d.val_fraction, d.split_seed)
        rows = resample(cache.records, split.train, d.train_fraction, d.subset_seed,
                        drop_empty=d.drop_empty)
        return {"train": sorted({cache.records[i].id.scene for i in rows}),
                "val": sorted(split.val_scenes)}
    except Exception:  # noqa: BLE001 - the data may live on another machine: not recorded
        return None

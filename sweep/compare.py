"""`sweep compare`: the top configs side by side on the study's hard-case panel.

Every complete trial keeps its predictions on the panel (the overlay masks artifact); the grid
takes each config's best run, one column per config, one row per panel patch, the predictions
coloured TP white, FP red, FN blue, each column titled with its params and its (confirmed)
score. The PNG is written to `out` and attached to the study as an artifact, so the dashboard
shows it on the study's page.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudseg import ConfigError
from sweep.artifacts import grid_png, panel_row
from sweep.mirror.media import MASKS_KEY, load_overlay_masks, read_artifact
from sweep.record import load

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

NODATA_GREY = 128  # the false-colour image paints no-data pixels 0.5 grey


def _column(
    study_name: str, store: FileSystemArtifactStore, trial: Any
) -> dict[str, dict[str, Any]]:
    """Patch name → {image, prediction, ground_truth} of one trial's panel predictions."""
    artifact = load(trial, ("artifacts",)).artifacts.by_name().get(MASKS_KEY)
    if artifact is None:
        raise ConfigError(f"study {study_name!r}: trial {trial.number} has no panel predictions "
                          f"({MASKS_KEY} artifact); it ran before they were kept, or was pruned")
    return {p["patch"]: p for p in load_overlay_masks(read_artifact(store, artifact))}


def _title(rank: int, config: Any) -> str:
    params = "\n".join(f"{k.split('.')[-1] if not k.endswith('.name') else k.split('.')[0]}="
                       + (f"{v:.3g}" if isinstance(v, float) else str(v))
                       for k, v in sorted(config.origin.params.items()))
    return f"#{rank} trial {config.origin.number}\n{config.describe()}\n{params}"


def patch_label(name: str, width: int = 26) -> list[str]:
    """A panel patch's name as label lines of at most `width` characters, nothing cut: the
    patch part (`patch_12_2_by_4`) on its own line, then the scene id broken at underscores
    (each broken line keeps its trailing `_`, so the lines joined are the name).
    """
    import re
    import textwrap

    found = re.match(r"^(patch_\d+_\d+_by_\d+)_(.+)$", name)
    head, rest = (found.group(1) + "_", found.group(2)) if found else ("", name)
    parts = textwrap.wrap(rest.replace("_", " "), width - 1, break_long_words=True) or [""]
    lines = [p.replace(" ", "_") for p in parts]
    lines = [line + "_" for line in lines[:-1]] + lines[-1:]
    return ([head] if head else []) + lines


def compare_grid(study: Any, store: Any, configs: list, out: Path, note: str = "") -> Path:
    """Draw the grid of `configs` (sweep.ranking.ConfigRuns, best first) to `out`."""
    maximize = study.direction.name == "MAXIMIZE"
    panel = study.user_attrs.get("panel") or []
    columns = [_column(study.study_name, store, c.best_run(maximize)) for c in configs]
    names = [p["patch"] for p in panel if all(p["patch"] in col for col in columns)]
    reasons = {p["patch"]: p["reason"] for p in panel}
    if not names:
        raise ConfigError(f"study {study.study_name!r}: no hard-case panel patch is shared by "
                          "the compared trials (the study predates its panel)")
    rows = []
    for name in names:
        first = columns[0][name]
        valid = ~(first["image"] == NODATA_GREY).all(axis=-1)
        truth = first["ground_truth"].astype(bool)
        rows.append(panel_row(first["image"], truth,
                              [col[name]["prediction"].astype(bool) for col in columns], valid))
    out.parent.mkdir(parents=True, exist_ok=True)
    return grid_png(
        rows, ["NIR-R-G", "ground truth", *(_title(i, c) for i, c in enumerate(configs, 1))],
        out, row_labels=["\n".join([reasons.get(name, ""), *patch_label(name)])
                                for name in names],
        caption=f"{study.study_name}: hard-case panel · TP white · FP red · FN blue"
        + (f"\n{note}" if note else ""),
    )


def attach(study: Any, store: Any, path: Path) -> str:
    """Upload the grid as an artifact of the study (the dashboard lists study artifacts)."""
    from optuna.artifacts import upload_artifact

    return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)

"""The official 38-Cloud evaluation (the authors' `evaluation.m`), with its failure modes made loud.

Protocol (the default, and what the tables say they are): threshold each scene's cloud
probability at `> 12/255`, stitch per-patch predictions by (row, col) and crop the scene out of
the middle of the grid (centred padding), compare every pixel with the whole-scene ground truth
(`Entire_scene_gts/edited_corrected_gts_<scene>.TIF`), no-data margins included and scored on
the network's own output there, compute precision, recall, specificity, Jaccard and overall
accuracy *per scene*, then average over the scenes. That mean is the figure papers report
(Cloud-Net: Jaccard 78.50). Pooling TP/FP/FN/TN over all scenes first gives a different,
usually higher number: it is reported too, always labelled "pooled". `footprint=True` scores
only the pixels inside each scene's footprint instead, and is labelled so.

Predictions come as scene GeoTIFFs or per-patch files (`cloudseg.scenes.sources`). Unlike
`evaluation.m`, a scene without a prediction, a prediction without a ground truth, a missing
patch or a size that does not fit is an error that names the scene.

A scene with an empty denominator (no cloud and none predicted) scores 1.0 for that quantity,
the `Metrics` convention; Matlab would give NaN there. The 20 38-Cloud test scenes all have cloud.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cloudseg.errors import ConfigError
from cloudseg.metrics import Metrics, confusion_counts
from cloudseg.scenes.geotiff import open_raster
from cloudseg.scenes.sources import (
    PROB_SUFFIX,
    EvaluationError,
    Source,
    binarise,
    prediction_sources,
)

OFFICIAL_THRESHOLD = 12 / 255
# The five per-scene figures of the 38-Cloud tables, as (Metrics attribute, table column).
SCENE_METRICS: tuple[tuple[str, str], ...] = (
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("specificity", "Specificity"),
    ("iou", "Jaccard"),
    ("accuracy", "Accuracy"),
)
GT_PREFIX = "edited_corrected_gts_"
GT_FOLDER = "Entire_scene_gts"
PROTOCOLS = ("per-scene", "pooled")
SCORED_ALL = "every pixel (38-Cloud protocol: no-data margins included)"
SCORED_FOOTPRINT = "footprint only (no-data margins excluded: NOT the 38-Cloud protocol)"


@dataclass(frozen=True)
class SceneResult:
    """One scene's counts and the shape of its ground truth."""

    scene: str
    metrics: Metrics
    shape: tuple[int, int]  # (height, width) of the ground truth


@dataclass(frozen=True)
class EvaluationReport:
    """Every scored scene, the threshold and which pixels were scored."""

    scenes: tuple[SceneResult, ...]
    threshold: float
    scored: str = SCORED_ALL
    masks: bool = False  # every input read as a binary mask (cloud where > 0)

    @property
    def mean(self) -> dict[str, float]:
        """The authors' figure: each metric averaged over scenes (fractions, not percent)."""
        return mean_over_scenes(s.metrics for s in self.scenes)

    @property
    def pooled(self) -> Metrics:
        """Counts summed over every pixel of every scene: NOT the published protocol."""
        return sum((s.metrics for s in self.scenes), Metrics(0, 0, 0, 0))

    def summary(self, protocol: str = "per-scene") -> dict:
        """JSON-ready summary; `headline` says which table the caller chose to lead with."""
        pooled = self.pooled
        return {
            "headline": protocol,
            "threshold": self.threshold,
            "scored": self.scored,
            "n_scenes": len(self.scenes),
            "per_scene_mean_percent": {col: 100 * self.mean[a] for a, col in SCENE_METRICS},
            "pooled_percent": {col: 100 * getattr(pooled, a) for a, col in SCENE_METRICS},
            "pooled_counts": {"tp": pooled.tp, "fp": pooled.fp, "fn": pooled.fn, "tn": pooled.tn},
            "note": "per_scene_mean = 38-Cloud protocol (mean of per-scene figures); "
            "pooled = counts summed over all scenes first (not comparable with papers)",
        }


def mean_over_scenes(rows: Iterable[Metrics | Mapping[str, float]]) -> dict[str, float]:
    """Mean of each per-scene figure. A row is a `Metrics` (counts) or a mapping with the keys
    precision/recall/specificity/iou/accuracy as fractions (e.g. a published table), so measured
    and published results go through the same reduction.
    """
    rows = list(rows)
    if not rows:
        raise EvaluationError("no scenes to average")
    out = {}
    for attr, _ in SCENE_METRICS:
        values = [r[attr] if isinstance(r, Mapping) else getattr(r, attr) for r in rows]
        out[attr] = float(np.mean(values))
    return out


def read_scene_table(path: str | Path) -> list[tuple[str, dict[str, float]]]:
    """Rows of a per-scene table in percent (the authors' xlsx converted to CSV, or the CSV
    `write_scene_csv` writes) → (scene, {metric: fraction}).
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [
                c
                for c in ("Scene ID", *(col for _, col in SCENE_METRICS))
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise ConfigError(f"{path}: missing column(s) {missing}")
            return [
                (row["Scene ID"], {a: float(row[col]) / 100 for a, col in SCENE_METRICS})
                for row in reader
            ]
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None


def parse_threshold(text: str | float) -> float:
    """`12/255`, `0.047` or a float → a threshold in (0, 1)."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"threshold: expected a number or a fraction like 12/255, got {text!r}"
        ) from None
    if not 0 <= value < 1:
        raise ConfigError(f"threshold: must be in [0, 1), got {text!r}")
    return value


def gt_path_map(gt_dir: str | Path) -> dict[str, Path]:
    """Scene → whole-scene gt file, from `GT_DIR` itself, its `Entire_scene_gts/` folder, or
    that folder one level down (a data root whose `38-Cloud_test/` holds it).
    """
    gt_dir = Path(gt_dir)
    hint = (f"the 38-Cloud layout keeps them in <data root>/38-Cloud_test/{GT_FOLDER}/ "
            "(the data root itself is accepted too)")
    if not gt_dir.is_dir():
        raise EvaluationError(f"{gt_dir}: ground-truth folder does not exist; {hint}")
    candidates = [gt_dir / GT_FOLDER, *sorted(gt_dir.glob(f"*/{GT_FOLDER}")), gt_dir]
    folder = next(c for c in candidates if c.is_dir())
    pattern = re.compile(rf"^{GT_PREFIX}(.+)\.tiff?$", re.IGNORECASE)
    found = {m.group(1): p for p in sorted(folder.iterdir()) if (m := pattern.match(p.name))}
    if not found:
        raise EvaluationError(f"{gt_dir}: no {GT_PREFIX}<scene>.TIF files found; {hint}")
    return found


def _shape(path: Path) -> tuple[int, int]:
    with open_raster(path) as src:
        return src.height, src.width


def _read(path: Path) -> np.ndarray:
    with open_raster(path) as src:
        return src.read(1)


def score_scene(
    prediction: np.ndarray,
    gt: np.ndarray,
    threshold: float = OFFICIAL_THRESHOLD,
    scene: str = "scene",
) -> Metrics:
    """Counts over every pixel of one scene; gt is cloud where > 0 (38-Cloud gts are 0/255)."""
    if prediction.shape != gt.shape:
        raise EvaluationError(
            f"scene {scene}: prediction is {prediction.shape[0]}x{prediction.shape[1]} but the "
            f"ground truth is {gt.shape[0]}x{gt.shape[1]} (height x width)"
        )
    return confusion_counts(binarise(prediction, threshold), gt > 0)


def _score(
    source: Source, gt_path: Path, shape: tuple[int, int], threshold: float, footprint: bool,
    masks: bool,
) -> Metrics:
    cloud, truth = source.binary(shape, threshold, masks), _read(gt_path) > 0
    if footprint:
        inside = source.footprint()
        cloud, truth = cloud[inside], truth[inside]
    return confusion_counts(cloud, truth)


def evaluate_scenes(
    pred_dir: str | Path,
    gt_dir: str | Path,
    threshold: float = OFFICIAL_THRESHOLD,
    *,
    footprint: bool = False,
    masks: bool = False,
) -> EvaluationReport:
    """Score every scene that has a whole-scene ground truth in `gt_dir` against its
    prediction in `pred_dir` (scene GeoTIFFs or per-patch files). All pairing, grid and size
    problems are checked (from file names and headers) before any pixel is read and reported
    together. `footprint` scores only pixels inside each scene's footprint (labelled so).
    """
    gts, preds = gt_path_map(gt_dir), prediction_sources(pred_dir)
    problems = [
        f"scene {s}: no prediction in {pred_dir} (expected {s}{PROB_SUFFIX} or "
        f"*patch_<idx>_<row>_by_<col>_{s}.TIF files)"
        for s in gts
        if s not in preds
    ]
    problems += [
        f"scene {s}: prediction in {pred_dir} has no ground truth ({GT_PREFIX}{s}.TIF) in {gt_dir}"
        for s in preds
        if s not in gts
    ]
    shapes = {s: _shape(gts[s]) for s in sorted(set(gts) & set(preds))}
    problems += [p for s, shape in shapes.items() if (p := preds[s].problem(shape))]
    if problems:
        raise EvaluationError("; ".join(problems))
    results = tuple(
        SceneResult(s, _score(preds[s], gts[s], shape, threshold, footprint, masks), shape)
        for s, shape in shapes.items()
    )
    return EvaluationReport(results, threshold, SCORED_FOOTPRINT if footprint else SCORED_ALL,
                            masks)


def write_scene_csv(report: EvaluationReport, path: str | Path) -> Path:
    """Per-scene table in the authors' column layout (percent), plus the raw counts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "Scene ID",
                "Threshold",
                *(c for _, c in SCENE_METRICS),
                "TP",
                "FP",
                "FN",
                "TN",
                "Height",
                "Width",
            ]
        )
        for s in report.scenes:
            m = s.metrics
            w.writerow(
                [
                    s.scene,
                    f"{report.threshold:.6f}",
                    *(f"{100 * getattr(m, a):.4f}" for a, _ in SCENE_METRICS),
                    m.tp,
                    m.fp,
                    m.fn,
                    m.tn,
                    *s.shape,
                ]
            )
    return path


def write_summary_json(
    report: EvaluationReport, path: str | Path, protocol: str = "per-scene"
) -> Path:
    """Write `report.summary(protocol)` as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.summary(protocol), indent=2) + "\n")
    return path

"""The official 38-Cloud evaluation (the authors' `evaluation.m`), with its failure modes made loud.

Protocol: threshold each scene's cloud probability at `> 12/255`, compare every pixel with the
whole-scene ground truth (`Entire_scene_gts/edited_corrected_gts_<scene>.TIF`), compute precision,
recall, specificity, Jaccard and overall accuracy *per scene*, then average over the scenes. That
mean is the figure papers report (Cloud-Net: Jaccard 78.50). Pooling TP/FP/FN/TN over all scenes
first gives a different, usually higher number: it is reported too, always labelled "pooled".

Unlike `evaluation.m`, a scene without a prediction, a prediction without a ground truth, or a
prediction whose size differs from its ground truth is an error that names the scene (the Matlab
script silently compares a canvas that is too small).

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

from cloudseg.errors import CloudsegError, ConfigError
from cloudseg.geotiff import open_raster
from cloudseg.metrics import Metrics, confusion_counts

OFFICIAL_THRESHOLD = 12 / 255
# The five per-scene figures of the 38-Cloud tables, as (Metrics attribute, table column).
SCENE_METRICS: tuple[tuple[str, str], ...] = (
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("specificity", "Specificity"),
    ("iou", "Jaccard"),
    ("accuracy", "Accuracy"),
)
PROB_SUFFIX = "_prob.tif"  # what `cloudseg predict` writes: uint8 probability 0-255
GT_PREFIX = "edited_corrected_gts_"
GT_FOLDER = "Entire_scene_gts"
PROTOCOLS = ("per-scene", "pooled")


class EvaluationError(CloudsegError):
    """Predictions and ground truths do not line up: the message names every scene at fault."""


@dataclass(frozen=True)
class SceneResult:
    scene: str
    metrics: Metrics
    shape: tuple[int, int]  # (height, width) of the ground truth


@dataclass(frozen=True)
class EvaluationReport:
    scenes: tuple[SceneResult, ...]
    threshold: float

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
    and published results go through the same reduction."""
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
    `write_scene_csv` writes) → (scene, {metric: fraction})."""
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
    that folder one level down (a data root whose `38-Cloud_test/` holds it)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise EvaluationError(f"{gt_dir}: ground-truth folder does not exist")
    candidates = [gt_dir / GT_FOLDER, *sorted(gt_dir.glob(f"*/{GT_FOLDER}")), gt_dir]
    folder = next(c for c in candidates if c.is_dir())
    pattern = re.compile(rf"^{GT_PREFIX}(.+)\.tiff?$", re.IGNORECASE)
    return {m.group(1): p for p in sorted(folder.iterdir()) if (m := pattern.match(p.name))}


def prediction_path_map(pred_dir: str | Path) -> dict[str, Path]:
    """Scene → `<scene>_prob.tif` in `PRED_DIR` (what `cloudseg predict` writes)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder does not exist")
    n = len(PROB_SUFFIX)
    return {
        p.name[:-n]: p for p in sorted(pred_dir.iterdir()) if p.name.lower().endswith(PROB_SUFFIX)
    }


def _shape(path: Path) -> tuple[int, int]:
    with open_raster(path) as src:
        return src.height, src.width


def _read(path: Path) -> np.ndarray:
    with open_raster(path) as src:
        return src.read(1)


def binarise(prediction: np.ndarray, threshold: float) -> np.ndarray:
    """`p > threshold` where p = value/255 for uint8 images, the value itself for floats."""
    if prediction.dtype == np.uint8:
        lut = np.arange(256) / 255 > threshold  # exact `v/255 > t`, without a float copy
        return lut[prediction]
    if np.issubdtype(prediction.dtype, np.integer):
        raise EvaluationError(f"prediction dtype {prediction.dtype}: expected uint8 or float")
    return prediction > threshold


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


def evaluate_scenes(
    pred_dir: str | Path, gt_dir: str | Path, threshold: float = OFFICIAL_THRESHOLD
) -> EvaluationReport:
    """Score every scene that has a whole-scene ground truth in `gt_dir` against
    `pred_dir/<scene>_prob.tif`. All pairing and size problems are checked (from the file
    headers) before any pixel is read and reported together."""
    gts, preds = gt_path_map(gt_dir), prediction_path_map(pred_dir)
    problems = [
        f"scene {s}: no prediction (expected {Path(pred_dir) / (s + PROB_SUFFIX)})"
        for s in gts
        if s not in preds
    ]
    problems += [
        f"scene {s}: prediction {preds[s]} has no ground truth ({GT_PREFIX}{s}.TIF) in {gt_dir}"
        for s in preds
        if s not in gts
    ]
    shapes = {}
    for scene in sorted(set(gts) & set(preds)):
        shapes[scene] = _shape(gts[scene])
        got = _shape(preds[scene])
        if got != shapes[scene]:
            problems.append(
                f"scene {scene}: prediction is {got[0]}x{got[1]} but the ground truth "
                f"is {shapes[scene][0]}x{shapes[scene][1]} (height x width)"
            )
    if problems:
        raise EvaluationError("; ".join(problems))
    if not shapes:
        raise EvaluationError(f"{gt_dir}: no {GT_PREFIX}<scene>.TIF files found")
    results = tuple(
        SceneResult(s, score_scene(_read(preds[s]), _read(gts[s]), threshold, s), shapes[s])
        for s in sorted(shapes)
    )
    return EvaluationReport(results, threshold)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.summary(protocol), indent=2) + "\n")
    return path

"""Each finished final fit, exported, predicts the test split and is scored with `cloudseg
evaluate`'s protocol (`cloudseg.evaluate_scenes`: per scene, the per-scene mean and pooled) at
12/255 and at its bundle's threshold; beside Cloud-Net where the test scene ids match, and, with
three or more fits, the rank correlation between the search's values and the test scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from cloudseg import Comparison, EvaluationReport

SPLIT_DIR = "38-Cloud_test"
CHOSEN_ON = ("the epoch (best validation value) and the threshold (the study's rule) were "
             "chosen on the study's validation scenes, held out of the final fit's training; "
             "the test split was used for nothing but these figures")


@dataclass(frozen=True)
class FitScore:
    """One final fit on the test split."""

    rank: int  # the config's rank in the search
    origin: int  # its search trial
    trial: int  # the final fit's trial number (in the final-fit study)
    params: dict[str, Any]
    search_value: float
    search_runs: int  # confirmation runs behind search_value (0: the search trial's value)
    bundle: Path
    predictions: Path
    official: EvaluationReport  # at 12/255
    at_bundle: EvaluationReport  # at the bundle's threshold
    cloudnet: Comparison | None  # None: no test scene is in the Cloud-Net table

    @property
    def test_iou(self) -> float:
        """The benchmark figure: per-scene mean Jaccard at 12/255."""
        return self.official.mean["iou"]


def _report_dict(report: EvaluationReport) -> dict[str, Any]:
    from cloudseg import SCENE_METRICS

    return {**report.summary(), "per_scene_percent": {
        s.scene: {col: 100 * getattr(s.metrics, a) for a, col in SCENE_METRICS}
        for s in report.scenes}}


def test_metrics(score: FitScore) -> dict[str, Any]:
    """The `test` entry of the bundle's metrics.json."""
    out: dict[str, Any] = {
        "split": SPLIT_DIR, "n_scenes": len(score.official.scenes), "chosen_without_test":
        CHOSEN_ON, "official": _report_dict(score.official),
        "bundle_threshold": _report_dict(score.at_bundle),
        "final_fit": {"study_trial": score.trial, "search_trial": score.origin,
                      "search_rank": score.rank, "search_value": score.search_value},
    }
    if score.cloudnet is not None:
        ours, theirs = score.cloudnet.means()
        out["cloudnet"] = {"shared_scenes": len(score.cloudnet.scenes),
                           "ours_jaccard_percent": 100 * ours["iou"],
                           "cloudnet_jaccard_percent": 100 * theirs["iou"],
                           "source": score.cloudnet.reference.label}
    return out


def score_fit(final: optuna.Study, trial: Any, store: FileSystemArtifactStore, out: Path,
              data_root: Path, *, device: str = "auto") -> FitScore:
    """Export `trial`'s bundle under `out`, predict the test split, score it, and export the
    bundle again with the test figures in its metrics.json and card.
    """
    from cloudseg import (
        OFFICIAL_THRESHOLD,
        check_bundle,
        compare_with_reference,
        evaluate_scenes,
        predict_scenes,
    )
    from sweep.export import export_trial

    attrs = trial.user_attrs
    rank = int(attrs.get("final_rank", 0))
    bundle = export_trial(final, trial, out / f"model-rank-{rank}", store)
    predictions = out / "predictions" / f"rank-{rank}"
    predict_scenes(bundle, data_root, predictions, "test", device=device)
    threshold = check_bundle(bundle).train.threshold
    gts = data_root / SPLIT_DIR
    official = evaluate_scenes(predictions, gts, OFFICIAL_THRESHOLD)
    at_bundle = evaluate_scenes(predictions, gts, threshold)
    cmp = compare_with_reference(official)
    score = FitScore(rank, int(attrs["final_of"]), trial.number, dict(trial.params),
                     float(attrs.get("search_value", float("nan"))),
                     int(attrs.get("search_runs", 0)), bundle, predictions, official, at_bundle,
                     cmp if cmp.scenes else None)
    export_trial(final, trial, bundle, store, extra={"test": test_metrics(score)})
    return score


def rank_correlation(scores: list[FitScore]) -> dict[str, Any] | None:
    """Spearman's rho between the search's values and the test IoU (12/255), with 3+ fits."""
    if len(scores) < 3:
        return None
    from scipy.stats import spearmanr

    result = spearmanr([s.search_value for s in scores], [s.test_iou for s in scores])
    rho, p = float(result.statistic), float(result.pvalue)
    return {"n": len(scores), "spearman_rho": rho, "p_value": p,
            "search": [s.search_value for s in scores], "test": [s.test_iou for s in scores]}

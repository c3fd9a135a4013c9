"""Each epoch's validation figures at the three thresholds a study can score by.

- "fixed": `train.threshold` (0.5 unless a config sets it), the loss's own decision boundary;
- "official": 12/255, the threshold the 38-Cloud benchmark scores masks at;
- "tuned": the histogram edge that maximises validation IoU (pooled, or per-scene mean when
  `train.val_metric` is "scene"), chosen on the validation scenes themselves.

All three come from one pass's probability histograms (cloudseg.scenes.histograms), exact at
every bin edge, so scoring at another threshold costs no second pass and stores no pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudseg.metrics import Metrics
from cloudseg.scenes.histograms import OFFICIAL_EDGE, ThresholdHistograms

RULES = ("fixed", "official", "tuned")
RULE_SUFFIX = {"fixed": "", "official": "_official", "tuned": "_tuned"}


@dataclass(frozen=True)
class ThresholdFigures:
    """Validation counts at one threshold: pooled, and IoU per validation scene."""

    threshold: float
    pooled: Metrics
    scene_ious: dict[str, float]

    @property
    def scene_iou(self) -> float:
        """IoU per scene averaged over scenes (the 38-Cloud reduction)."""
        return sum(self.scene_ious.values()) / max(len(self.scene_ious), 1)


def figures_at(hist: ThresholdHistograms, edge: int) -> ThresholdFigures:
    """Pooled counts and per-scene IoU at bin edge `edge` (threshold edge/bins)."""
    per_scene = hist.at(edge)
    return ThresholdFigures(
        threshold=edge / hist.bins,
        pooled=sum(per_scene.values(), Metrics(0, 0, 0, 0)),
        scene_ious={s: m.iou for s, m in sorted(per_scene.items())},
    )


def threshold_figures(
    hist: ThresholdHistograms, fixed: float, by_scene: bool
) -> dict[str, ThresholdFigures]:
    """The figures at "fixed" (nearest edge: exact when `fixed` is one, as 0.5 is), "official"
    and "tuned" (the edge with the best IoU, per-scene mean when `by_scene`).
    """
    tuned, _ = hist.best("iou", by_scene)
    return {
        "fixed": figures_at(hist, round(fixed * hist.bins)),
        "official": figures_at(hist, OFFICIAL_EDGE),
        "tuned": figures_at(hist, round(tuned * hist.bins)),
    }


def flat_figures(figures: dict[str, ThresholdFigures]) -> dict[str, float | dict]:
    """Flat record keys: `iou_official`, `precision_tuned`, `scene_iou_official`, ...,
    `tuned_threshold`, and `scene_ious` {rule: {scene: IoU}} for paired comparisons. The
    "fixed" rule's pooled figures are the record's plain keys already (`iou`, `precision`).
    """
    out: dict[str, float | dict] = {}
    for rule in ("official", "tuned"):
        f = figures[rule]
        for name in ("iou", "dice", "precision", "recall", "specificity", "accuracy"):
            out[f"{name}{RULE_SUFFIX[rule]}"] = getattr(f.pooled, name)
        out[f"scene_iou{RULE_SUFFIX[rule]}"] = f.scene_iou
    out["tuned_threshold"] = figures["tuned"].threshold
    out["scene_ious"] = {rule: f.scene_ious for rule, f in figures.items()}
    return out


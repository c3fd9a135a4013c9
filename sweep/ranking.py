"""Rank configs, not single draws: each config's runs (its search trial and the confirmation
runs of it) as mean ± sd, and whether #1 really beats #2.

A search trial trains once on one random training subset; its value is one draw. After the
study's confirmation runs (sweep.execution.confirm) a config has 1 + repeats values, and the
ranking is by their mean. Whether #1 beats #2 is asked of the validation scenes, which every
run shares (the split is fixed per study): each config's IoU per scene, averaged over its
runs, paired by scene, in a Wilcoxon signed-rank test. With few validation scenes the test
cannot reach significance (6 scenes are the fewest for p < 0.05 two-sided) and says "tied".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from sweep.execution.confirm import confirms
from sweep.record import failure_of, load

ALPHA = 0.05
TEST_NAME = "Wilcoxon signed-rank over validation scenes (IoU per scene, mean over runs)"


@dataclass(frozen=True)
class ConfigRuns:
    """One config: its search trial and every complete run of it (the search trial first)."""

    origin: Any  # FrozenTrial
    runs: tuple[Any, ...]

    @property
    def values(self) -> list[float]:
        """Each run's value (search trial first)."""
        return [float(t.value) for t in self.runs]

    @property
    def mean(self) -> float:
        """Mean value over the config's runs."""
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """Standard deviation over the runs; None for a single run."""
        return statistics.stdev(self.values) if len(self.runs) > 1 else None

    @property
    def confirmed(self) -> bool:
        """Whether the config has confirmation runs besides its search trial."""
        return len(self.runs) > 1

    def best_run(self, maximize: bool = True) -> Any:
        """The run with the best value (its checkpoint is what an export ships)."""
        pick = max if maximize else min
        return pick(self.runs, key=lambda t: (t.value, -t.number))

    def scene_ious(self, rule: str) -> dict[str, float]:
        """IoU per validation scene at threshold `rule`, averaged over the runs that have it."""
        per_run = [load(t, ("metrics",)).scene_ious(rule) for t in self.runs]
        per_run = [r for r in per_run if r]
        scenes = sorted(set.intersection(*(set(r) for r in per_run))) if per_run else []
        return {s: statistics.fmean(r[s] for r in per_run) for s in scenes}

    def describe(self) -> str:
        """`mean ± sd (n=runs)` for tables."""
        sd = "" if self.sd is None else f" ± {self.sd:.4f}"
        return f"{self.mean:.4f}{sd} (n={len(self.runs)})"


@dataclass(frozen=True)
class PairedTest:
    """#1 against #2 over the validation scenes both were scored on."""

    n_scenes: int
    p_value: float | None  # None: no test possible (too few scenes, or no differences)
    verdict: str  # "beats" or "tied"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The test as JSON for metrics.json and the card."""
        return {"test": TEST_NAME, "n_scenes": self.n_scenes, "p_value": self.p_value,
                "alpha": ALPHA, "verdict": self.verdict, "reason": self.reason}


def _usable(trial: Any) -> bool:
    return trial.value is not None and failure_of(trial) is None


def rank_configs(study: Any) -> list[ConfigRuns]:
    """Every complete config, best first: confirmed configs by the mean of their runs, then the
    unconfirmed by their single value (a study without confirmations ranks as before).
    """
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if _usable(t)]
    runs: dict[int, list[Any]] = {}
    for t in done:
        origin = confirms(t)
        runs.setdefault(t.number if origin is None else origin, []).append(t)
    by_number = {t.number: t for t in done}
    configs = [ConfigRuns(by_number[n], tuple(sorted(rs, key=lambda t: t.number)))
               for n, rs in runs.items() if n in by_number]
    maximize = study.direction.name == "MAXIMIZE"
    sign = -1.0 if maximize else 1.0
    return sorted(configs, key=lambda c: (not c.confirmed, sign * c.mean, c.origin.number))


def paired_test(first: ConfigRuns, second: ConfigRuns, rule: str,
                maximize: bool = True) -> PairedTest:
    """Does `first` beat `second`? Wilcoxon signed-rank on per-scene IoU, two-sided."""
    a, b = first.scene_ious(rule), second.scene_ious(rule)
    scenes = sorted(set(a) & set(b))
    n = len(scenes)
    diffs = [a[s] - b[s] for s in scenes]
    if not any(diffs):
        return PairedTest(n, None, "tied", f"no per-scene difference over {n} scene(s)")
    from scipy.stats import wilcoxon

    p = float(wilcoxon([a[s] for s in scenes], [b[s] for s in scenes]).pvalue)
    ahead = statistics.fmean(diffs) > 0 if maximize else statistics.fmean(diffs) < 0
    if math.isfinite(p) and p < ALPHA and ahead:
        return PairedTest(n, p, "beats", f"p = {p:.3g} < {ALPHA} over {n} scenes")
    floor = min(1.0, 2 / 2**n)  # the smallest two-sided p an exact test on n scenes can give
    scenes_text = f"{n} scene" + ("" if n == 1 else "s")
    why = (f"{scenes_text} cannot give p < {ALPHA} (smallest possible p = {floor:.3g})"
           if floor >= ALPHA else f"p = {p:.3g} >= {ALPHA} over {scenes_text}")
    return PairedTest(n, p, "tied", why)

"""Rank configs by runs that did not select them, each with an honest interval, and say whether
#1 beats #2.

A search trial trains a config once; the config is a contender *because* that one draw came out
high, so its value is biased upward (the winner's curse). A config's confirmed score is the mean
of its confirmation runs only (sweep.execution.confirm: fresh training subset, initialisation,
crops and flips each); its search value is shown apart and never averaged in.

Intervals are over training runs: every run of a study is scored on the same validation scenes,
so what varies from run to run is the training draw, and that is what a user who retrains the
winner meets again. A config's interval is mean ± t(n−1)·sd/√n; #1 − #2 is Welch's interval on
their run values, with a one-sided p-value for "#1 is better"; the probability that #1 is the
best of the confirmed configs draws each config's mean from its t posterior (seeded, so a
ranking reads the same every time). How the winner does on *other* scenes is the test set's
question (`sweep finalize`), not this one.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from sweep.execution.confirm import confirms
from sweep.intervals import LEVEL, t_quantile, welch
from sweep.record import failure_of, load

TEST_NAME = "Welch's t over confirmation runs (each run: the study's value on validation)"


@dataclass(frozen=True)
class ConfigRuns:
    """One config: the search trial that proposed it and its confirmation runs."""

    origin: Any  # FrozenTrial: the search trial (it selected the config: shown apart)
    runs: tuple[Any, ...]  # complete confirmation runs, by number

    @property
    def values(self) -> list[float]:
        """Each confirmation run's value."""
        return [float(t.value) for t in self.runs]

    @property
    def n(self) -> int:
        """How many confirmation runs the score rests on."""
        return len(self.runs)

    @property
    def confirmed(self) -> bool:
        """Whether the config has confirmation runs."""
        return bool(self.runs)

    @property
    def search_value(self) -> float:
        """The value of the search trial that selected the config (biased upward)."""
        return float(self.origin.value)

    @property
    def mean(self) -> float:
        """The confirmed score: the mean of the confirmation runs; the search value when none."""
        return statistics.fmean(self.values) if self.runs else self.search_value

    @property
    def sd(self) -> float | None:
        """Run-to-run standard deviation of the confirmation runs (None below two runs)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    def interval(self, level: float = LEVEL) -> tuple[float, float] | None:
        """`level` t-interval of the confirmed mean, within [0, 1] (None below two runs)."""
        if self.sd is None:
            return None
        half = t_quantile(1 - (1 - level) / 2, self.n - 1) * self.sd / math.sqrt(self.n)
        return max(0.0, self.mean - half), min(1.0, self.mean + half)  # every metric is in [0, 1]

    def all_runs(self) -> tuple[Any, ...]:
        """The search trial and the confirmation runs: every trained model of this config."""
        return (self.origin, *self.runs)

    def best_run(self, maximize: bool = True) -> Any:
        """The run with the best value (its checkpoint is what an export ships)."""
        pick = max if maximize else min
        return pick(self.all_runs(), key=lambda t: (t.value, -t.number))

    def scene_ious(self, rule: str) -> dict[str, float]:
        """IoU per validation scene at threshold `rule`, averaged over the runs that have it."""
        per_run = [load(t, ("metrics",)).scene_ious(rule) for t in self.all_runs()]
        per_run = [r for r in per_run if r]
        scenes = sorted(set.intersection(*(set(r) for r in per_run))) if per_run else []
        return {s: statistics.fmean(r[s] for r in per_run) for s in scenes}

    def describe(self, level: float = LEVEL) -> str:
        """`mean [lo, hi] (n=runs)` for tables; the single value when unconfirmed."""
        if not self.confirmed:
            return f"{self.search_value:.4f} (search run only)"
        ci = self.interval(level)
        shown = "" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"
        return f"{self.mean:.4f}{shown} (n={self.n})"


@dataclass(frozen=True)
class Comparison:
    """#1 against #2 over their confirmation runs (`diff` > 0: #1 is better)."""

    leader: int  # search trial numbers of the two configs
    runner_up: int
    n: tuple[int, int]
    diff: float
    interval: tuple[float, float] | None
    p_value: float | None  # one-sided: #1 is not better
    prob_best: float | None  # that #1 is the best of the confirmed configs
    verdict: str  # "beats" | "tied" | "unsettled" (too few runs to say)
    reason: str
    level: float = LEVEL

    def as_dict(self) -> dict[str, Any]:
        """The comparison as JSON for metrics.json, the card and `sweep best --json`."""
        return {"test": TEST_NAME, "leader": self.leader, "runner_up": self.runner_up,
                "runs": list(self.n), "margin": self.diff,
                "interval": None if self.interval is None else list(self.interval),
                "level": self.level, "p_value": self.p_value, "prob_best": self.prob_best,
                "verdict": self.verdict, "reason": self.reason}

    def line(self) -> str:
        """One sentence for tables and summaries."""
        what = {"beats": "#1 beats #2", "tied": "#1 and #2 are tied",
                "unsettled": "#1 vs #2 is not settled"}[self.verdict]
        return f"{what}: {self.reason}"


def _usable(trial: Any) -> bool:
    return trial.value is not None and failure_of(trial) is None


def rank_configs(study: Any) -> list[ConfigRuns]:
    """Every complete config, best first: confirmed configs by the mean of their confirmation
    runs, then the unconfirmed by their search value.
    """
    return rank_trials(study.get_trials(deepcopy=False), study.direction.name == "MAXIMIZE")


def rank_trials(trials: list[Any], maximize: bool = True) -> list[ConfigRuns]:
    """`rank_configs` over a list of trials already read (the live view's one read a second)."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and _usable(t)]
    origins = {t.number: t for t in done if confirms(t) is None}
    runs: dict[int, list[Any]] = {n: [] for n in origins}
    for t in done:
        if (origin := confirms(t)) is not None and origin in runs:
            runs[origin].append(t)
    configs = [ConfigRuns(origins[n], tuple(sorted(rs, key=lambda t: t.number)))
               for n, rs in runs.items()]
    sign = -1.0 if maximize else 1.0
    return sorted(configs, key=lambda c: (not c.confirmed, sign * c.mean, c.origin.number))


def prob_best(configs: list[ConfigRuns], maximize: bool = True, draws: int = 20_000
              ) -> float | None:
    """P(the first config is the best of those with two or more runs), each mean drawn from its
    t posterior (mean + sd/√n · T(n−1)); seeded, so the answer is stable.
    """
    import numpy as np

    usable = [c for c in configs if c.n > 1]
    if len(usable) < 2 or usable[0] is not configs[0]:
        return None
    rng = np.random.default_rng(0)
    sign = 1.0 if maximize else -1.0
    samples = np.stack([sign * (c.mean + (c.sd or 0.0) / math.sqrt(c.n)
                                * rng.standard_t(c.n - 1, draws)) for c in usable])
    return float(np.mean(np.argmax(samples, axis=0) == 0))


def compare(configs: list[ConfigRuns], maximize: bool = True, level: float = LEVEL,
            verdict: str | None = None) -> Comparison | None:
    """#1 against #2 of the ranked `configs` (None unless both are confirmed). `verdict`: the
    race's own verdict when it ran (sweep.execution.racing), else read from the interval.
    """
    if len(configs) < 2 or not (configs[0].confirmed and configs[1].confirmed):
        return None
    first, second = configs[0], configs[1]
    a, b = first.values, second.values
    if not maximize:
        a, b = [-v for v in a], [-v for v in b]
    diff, ci, p = welch(a, b, level)
    if ci is None:
        found, reason = "unsettled", (f"#1 − #2 = {diff:+.4f} from {first.n} and {second.n} runs;"
                                      " two runs each are the fewest for an interval")
    else:
        found = "beats" if ci[0] > 0 else "tied"
        width = max(abs(ci[0]), abs(ci[1]))
        reason = (f"#1 − #2 = {diff:+.4f}, {level:.1%} interval [{ci[0]:+.4f}, {ci[1]:+.4f}] "
                  f"over {first.n} and {second.n} runs"
                  + ("" if found == "beats" else f": tied within ±{width:.4f}"))
    return Comparison(first.origin.number, second.origin.number, (first.n, second.n), diff, ci,
                      p, prob_best(configs, maximize), verdict or found, reason, level)


def study_comparison(study: Any, configs: list[ConfigRuns]) -> Comparison | None:
    """#1 against #2 of a study as every view shows it: at the level its race tests at (each
    round is a look at the data: 1 − (1 − level) / rounds) and with the race's verdict once the
    race is settled, so the interval and the verdict agree (`sweep best`, the dashboard note,
    metrics.json and the card).
    """
    from sweep.execution.confirm import race_state
    from sweep.study.spec import stored_confirm

    confirm = stored_confirm(study.user_attrs)
    level, verdict = LEVEL, None
    if confirm is not None:
        level = 1 - (1 - confirm.level) / confirm.settings().looks
        if configs and configs[0].confirmed:
            state = race_state(study, confirm.settings())
            verdict = "unsettled" if not state.settled else (
                None if state.verdict == "alone" else state.verdict)
    return compare(configs, maximize=study.direction.name == "MAXIMIZE", level=level,
                   verdict=verdict)

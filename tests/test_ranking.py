"""`sweep best` ranks configs by the mean of their confirmation runs only (the search run that
selected a config is shown apart), with a t interval, and #1 against #2 is Welch's test: checked
against an independent implementation (scipy's ttest_ind) and the textbook formulas."""

from __future__ import annotations

import math
import statistics

import optuna
import pytest
from scipy import stats

from sweep.ranking import ConfigRuns, compare, prob_best, rank_configs

DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def _trial(number: int, value: float, **attrs):
    t = optuna.trial.create_trial(params={"x": number / 1000}, distributions=DIST, value=value,
                                  user_attrs=attrs)
    t.number = number
    return t


def _config(origin: int, search: float, runs: list[float]) -> ConfigRuns:
    return ConfigRuns(_trial(origin, search),
                      tuple(_trial(100 + 10 * origin + i, v, confirms=origin)
                            for i, v in enumerate(runs)))


def test_the_confirmed_mean_leaves_the_selecting_run_out_and_its_interval_is_a_t_interval():
    c = _config(0, 0.90, [0.70, 0.74, 0.72, 0.76])
    assert c.mean == pytest.approx(0.73) and c.search_value == 0.90
    sd = statistics.stdev([0.70, 0.74, 0.72, 0.76])
    half = stats.t.ppf(0.975, 3) * sd / math.sqrt(4)
    lo, hi = c.interval()
    assert lo == pytest.approx(0.73 - half) and hi == pytest.approx(0.73 + half)
    assert _config(1, 0.8, [0.7]).interval() is None  # one run gives no interval


def test_welch_matches_scipy_and_the_formula_and_says_beats_only_outside_the_interval():
    a, b = [0.80, 0.78, 0.82, 0.79, 0.81], [0.70, 0.74, 0.69, 0.73]
    first, second = _config(0, 0.85, a), _config(1, 0.9, b)
    result = compare([first, second])
    reference = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert result.p_value == pytest.approx(reference.pvalue)
    va, vb = statistics.variance(a) / 5, statistics.variance(b) / 4
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = statistics.fmean(a) - statistics.fmean(b)
    assert result.interval == pytest.approx((diff - half, diff + half))
    assert result.verdict == "beats" and result.diff == pytest.approx(diff)
    assert result.prob_best > 0.99

    close = compare([_config(0, 0.8, [0.72, 0.70, 0.74]), _config(1, 0.8, [0.71, 0.73, 0.69])])
    assert close.verdict == "tied" and "tied within ±" in close.reason
    assert compare([_config(0, 0.8, [0.7]), _config(1, 0.8, [0.6])]).verdict == "unsettled"


def test_prob_best_is_a_probability_over_the_confirmed_configs():
    configs = [_config(0, 0.8, [0.71, 0.72, 0.70]), _config(1, 0.8, [0.70, 0.71, 0.69]),
               _config(2, 0.8, [0.60, 0.61, 0.59])]
    p = prob_best(configs)
    assert 0.5 < p < 1.0
    assert prob_best(configs) == p  # seeded: the same answer every time


def test_configs_rank_by_the_mean_of_their_confirmation_runs(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    for x, value, attrs in (
        (0.1, 0.76, {}),                       # 0: a lucky single draw
        (0.2, 0.65, {}),                       # 1
        (0.1, 0.55, {"confirms": 0}),          # 2: confirmations of 0
        (0.1, 0.50, {"confirms": 0}),
        (0.2, 0.66, {"confirms": 1}),          # 4: of 1
        (0.2, 0.64, {"confirms": 1}),
        (0.3, 0.70, {}),                       # 6: unconfirmed
    ):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=DIST,
                                                  value=value, user_attrs=attrs))
    configs = rank_configs(study)
    assert [c.origin.number for c in configs] == [1, 0, 6]  # confirmed by mean, then the rest
    assert [t.number for t in configs[0].runs] == [4, 5]
    assert configs[0].mean == pytest.approx(0.65) and configs[0].sd == pytest.approx(0.01 * 2**.5)
    assert configs[1].mean == pytest.approx((0.55 + 0.50) / 2)  # the search's 0.76 left out
    assert configs[2].sd is None and configs[1].best_run().number == 0

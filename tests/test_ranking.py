"""`sweep best` ranks configs by the mean of their runs, and the paired test of #1 against #2
is the Wilcoxon signed-rank test: checked against its definition (every sign assignment of
the ranked differences enumerated) on hand-made per-scene scores."""

from __future__ import annotations

import itertools

import optuna
import pytest

from sweep.ranking import ConfigRuns, paired_test, rank_configs

DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def _trial(number: int, value: float, scenes: dict[str, float] | None = None, **attrs):
    metrics = {"scene_ious": {"fixed": scenes}} if scenes else {}
    t = optuna.trial.create_trial(params={"x": number / 10}, distributions=DIST, value=value,
                                  user_attrs={"metrics": metrics, **attrs})
    t.number = number
    return t


def _exact_two_sided_p(diffs: list[float]) -> float:
    """Wilcoxon signed-rank, from the definition: W+ = sum of the ranks of |d| with d > 0;
    under H0 every sign assignment is equally likely (no ties, no zeros here)."""
    ranks = {i: r for r, i in enumerate(sorted(range(len(diffs)), key=lambda i: abs(diffs[i])),
                                        1)}
    w_plus = sum(ranks[i] for i, d in enumerate(diffs) if d > 0)
    n, total = len(diffs), len(diffs) * (len(diffs) + 1) / 2
    extreme = min(w_plus, total - w_plus)
    count = sum(1 for signs in itertools.product((0, 1), repeat=n)
                if min(s := sum(r for r, on in zip(range(1, n + 1), signs, strict=True) if on),
                       total - s) <= extreme)
    return count / 2**n


def test_paired_test_matches_the_definition_and_says_beats_only_when_significant():
    a = {f"s{i}": v for i, v in enumerate([0.80, 0.75, 0.90, 0.60, 0.85, 0.70, 0.95])}
    b = {f"s{i}": v for i, v in enumerate([0.70, 0.76, 0.80, 0.52, 0.70, 0.58, 0.93])}
    first = ConfigRuns(_trial(0, 0.8, a), (_trial(0, 0.8, a),))
    second = ConfigRuns(_trial(1, 0.7, b), (_trial(1, 0.7, b),))
    result = paired_test(first, second, "fixed")
    want = _exact_two_sided_p([a[s] - b[s] for s in sorted(a)])
    assert result.p_value == pytest.approx(want) and want < 0.05
    assert result.verdict == "beats" and result.n_scenes == 7

    reverse = paired_test(second, first, "fixed")  # the worse one never "beats"
    assert reverse.verdict == "tied"


def test_too_few_scenes_are_tied_and_say_why():
    a, b = {"s0": 0.9, "s1": 0.8, "s2": 0.7}, {"s0": 0.5, "s1": 0.4, "s2": 0.3}
    result = paired_test(ConfigRuns(_trial(0, .8, a), (_trial(0, .8, a),)),
                         ConfigRuns(_trial(1, .4, b), (_trial(1, .4, b),)), "fixed")
    assert result.verdict == "tied" and "3 scenes cannot give p < 0.05" in result.reason


def test_configs_rank_by_the_mean_of_their_runs(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    for x, value, attrs in (
        (0.1, 0.76, {}),                       # 0: lucky single draw
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
    assert [t.number for t in configs[0].runs] == [1, 4, 5]
    assert configs[0].mean == pytest.approx(0.65) and configs[0].sd == pytest.approx(0.01)
    assert configs[1].mean == pytest.approx((0.76 + 0.55 + 0.50) / 3)
    assert configs[2].sd is None and configs[1].best_run().number == 0

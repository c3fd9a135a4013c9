"""Racing (sweep.execution.racing) on configs of known score distributions: it names the better
of two configs a noise sd apart in >= 95 % of seeded races and calls equal ones tied in >= 95 %;
a lone contender, failed runs and unfinished rounds behave as the docstring says."""

from __future__ import annotations

import numpy as np

from sweep.execution.racing import RaceSettings, race

SD = 0.05
SETTINGS = RaceSettings(top=2, repeats=8, max_runs=48)


def run_race(gap: float, seed: int, settings: RaceSettings = SETTINGS):
    """Config 0 is the search's #1; config 1 is better by `gap` (0: equal). Each round's runs
    are drawn as the race asks for them, as workers would train them."""
    rng = np.random.default_rng(seed)
    means = {0: 0.60, 1: 0.60 + gap}
    values: dict[int, list[float]] = {0: [], 1: []}
    while True:
        state = race([0, 1], values, {c: len(v) for c, v in values.items()}, settings)
        if state.settled:
            return state, values
        for c, wanted in state.wanted.items():
            while len(values[c]) < wanted:
                values[c].append(float(rng.normal(means[c], SD)))


def test_a_gap_of_one_noise_sd_is_named_in_at_least_95_percent_of_races():
    named = sum(state.verdict == "beats" and state.alive == (1,)
                for state, _ in (run_race(SD, seed) for seed in range(200)))
    assert named / 200 >= 0.95, named


def test_equal_configs_are_called_tied_in_at_least_95_percent_of_races():
    tied = sum(state.verdict == "tied" for state, _ in (run_race(0.0, 10_000 + seed)
                                                         for seed in range(200)))
    assert tied / 200 >= 0.95, tied


def test_a_clear_winner_is_settled_in_the_first_round():
    state, values = run_race(10 * SD, 0)
    assert state.verdict == "beats" and state.rounds == 1 and len(values[1]) == 8


def test_rounds_ask_for_runs_only_when_the_last_is_in_and_stop_at_the_budget():
    s = RaceSettings(top=2, repeats=3, max_runs=6)
    assert race([0, 1], {}, {}, s).wanted == {0: 3, 1: 3}
    partial = race([0, 1], {0: [0.5] * 3, 1: [0.5] * 2}, {0: 3, 1: 2}, s)
    assert not partial.settled and partial.wanted == {0: 3, 1: 3}
    same = {0: [0.50, 0.52, 0.51], 1: [0.51, 0.50, 0.52]}
    second = race([0, 1], same, {0: 3, 1: 3}, s)
    assert not second.settled and second.wanted == {0: 6, 1: 6} and second.rounds == 1
    spent = race([0, 1], {c: v * 2 for c, v in same.items()}, {0: 6, 1: 6}, s)
    assert spent.verdict == "tied" and spent.rounds == 2


def test_failed_runs_count_toward_the_budget_and_a_lone_contender_is_alone():
    s = RaceSettings(top=2, repeats=2, max_runs=4)
    failing = race([0, 1], {0: [0.6, 0.61], 1: []}, {0: 2, 1: 2}, s)
    assert failing.verdict == "beats" and failing.out == {1: 1}  # config 1's runs all failed
    alone = race([7], {7: [0.6, 0.7]}, {7: 2}, RaceSettings(top=1, repeats=2, max_runs=6))
    assert alone.verdict == "alone" and alone.alive == (7,)

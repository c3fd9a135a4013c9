"""Racing the contenders: confirmation in rounds until the answer is settled (after SMAC3's
intensifier, but with rounds made of ordinary trials that any worker picks up).

The top configs of the search each get `repeats` confirmation runs (round 1). After each round
the leader (best mean of the confirmation runs) is compared with every other contender still in
the race by Welch's one-sided t-test on their run values; a contender the leader beats is out.
The race ends when one config is left ("beats": the leader beats every other contender) or when
every contender left has `max_runs` runs ("tied"). Otherwise the contenders left get another
`repeats` runs each. Each round is a look at the data and the leader is picked from the data,
so each one-sided test runs at (1 − level) / (2 · looks), looks being the most rounds the budget
allows: over a whole race, two equal configs are called different with probability at most
1 − level (Bonferroni; tests/test_racing.py measures it).

`race` is a pure function of the runs so far: every worker, on any machine, after any restart,
derives the same state from the storage, so the rounds need no coordinator (sweep.execution.
confirm queues what it asks for, exactly once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sweep.intervals import welch


@dataclass(frozen=True)
class RaceSettings:
    """The race of a spec's `confirm`: its contenders, runs per round, budget and level."""

    top: int
    repeats: int
    max_runs: int
    level: float = 0.95

    @property
    def looks(self) -> int:
        """The most rounds the budget allows."""
        return math.ceil(self.max_runs / self.repeats)

    def runs_after(self, rounds: int) -> int:
        """Runs per contender once `rounds` rounds are done."""
        return min(self.repeats * rounds, self.max_runs)


@dataclass(frozen=True)
class RaceState:
    """Where the race stands: the runs each contender should have by now (`wanted`, counted as
    attempts), who is still in, who fell at which round, and the verdict once settled.
    """

    wanted: dict[int, int]
    alive: tuple[int, ...]
    out: dict[int, int]  # contender → the round at which the leader beat it
    rounds: int  # rounds completed and judged
    verdict: str | None  # None while racing; then "beats", "tied" or "alone" (one contender)

    @property
    def settled(self) -> bool:
        """Whether the race has its answer."""
        return self.verdict is not None


def race(contenders: Sequence[int], values: Mapping[int, Sequence[float]],
         attempts: Mapping[int, int], settings: RaceSettings, maximize: bool = True
         ) -> RaceState:
    """The race's state from the finished runs: `values[c]` are contender c's run values in the
    order of their repeat number, `attempts[c]` its finished runs, failed ones included (a run
    that failed counts toward the budget, so a config whose runs fail cannot race forever).
    """
    alive = list(contenders)
    out: dict[int, int] = {}
    sign = 1.0 if maximize else -1.0
    alpha = (1 - settings.level) / (2 * settings.looks)  # the leader is picked: two-sided
    for round_ in range(1, settings.looks + 1):
        n = settings.runs_after(round_)
        if any(attempts.get(c, 0) < n for c in alive):  # this round's runs are not all in
            return RaceState({c: n for c in alive}, tuple(alive), out, round_ - 1, None)
        if len(contenders) == 1:
            return RaceState({alive[0]: n}, tuple(alive), out, round_, "alone")
        scored = {c: [sign * v for v in values.get(c, ())][:n] for c in alive}
        leader = max(alive, key=lambda c: (_mean(scored[c]), -alive.index(c)))
        for c in [c for c in alive if c != leader]:
            if not scored[c]:  # every run of it failed: it cannot win
                alive.remove(c)
                out[c] = round_
                continue
            _, _, p = welch(list(scored[leader]), list(scored[c]))
            if p is not None and p < alpha:
                alive.remove(c)
                out[c] = round_
        alive.sort(key=lambda c: c != leader)  # the leader first
        if len(alive) == 1:
            return RaceState({leader: n}, tuple(alive), out, round_, "beats")
    final = settings.runs_after(settings.looks)
    return RaceState({c: final for c in alive}, tuple(alive), out, settings.looks, "tied")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else -math.inf

"""The small statistics a ranking rests on: Welch's interval and one-sided test for a difference
of two means, and Student's t quantiles (scipy's t distribution underneath).
"""

from __future__ import annotations

import math
import statistics

LEVEL = 0.95


def t_quantile(q: float, df: float) -> float:
    """Student's t quantile."""
    from scipy.stats import t as student

    return float(student.ppf(q, df))


def welch(a: list[float], b: list[float], level: float = LEVEL
          ) -> tuple[float, tuple[float, float] | None, float | None]:
    """(mean(a) − mean(b), its `level` interval, the one-sided p of "a is not better"); no
    interval or p with fewer than two values on a side.
    """
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, (diff, diff), 0.0 if diff > 0 else 1.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    from scipy.stats import t as student

    half = t_quantile(1 - (1 - level) / 2, df) * se
    return diff, (diff - half, diff + half), float(student.sf(diff / se, df))

"""The tests the findings are judged by: Student-t and signed-rank (Hodges-Lehmann) intervals, McNemar's exact test.

Every interval here is two-sided at :data:`LEVEL`. An interval is NaN where the data cannot give one: one value, or
values without spread (every run equal: no estimate of the spread, so no interval, not a zero-width one), or for the
signed-rank interval fewer than six values (with five or fewer no set of Walsh averages reaches 95% coverage).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["LEVEL", "TESTS", "no_spread", "t_interval", "signed_rank_counts", "walsh_averages", "hodges_lehmann",
           "interval", "mcnemar"]

LEVEL = 0.95
"""Confidence level of every interval."""

TESTS = {"t": "95% t-interval", "signed-rank": "95% signed-rank interval"}
"""The interval each test gives, in words."""


def no_spread(x: np.ndarray) -> bool:
    """Whether the values ``x [R]`` are all equal, up to float rounding (1e-12 of their size)."""
    x = np.asarray(x, dtype=np.float64)
    return bool(np.ptp(x) <= 1e-12 * np.max(np.abs(x)))


def t_interval(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of ``x [R]`` and its two-sided Student-t interval (``R - 1`` degrees of freedom).

    NaN bounds for fewer than two values or values without spread.
    """
    from scipy import stats  # here: scipy.stats' import costs every command's start-up half a second

    x = np.asarray(x, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2 or no_spread(x):
        return mean, math.nan, math.nan
    lo, hi = stats.t.interval(level, len(x) - 1, loc=mean, scale=float(stats.sem(x)))
    return mean, float(lo), float(hi)


@lru_cache(maxsize=64)
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the ``2^n`` sign patterns give each value ``0 .. n(n+1)/2`` of the signed-rank statistic ``T+``."""
    counts = [1]
    for k in range(1, n + 1):  # the rank k is either counted (its sign positive) or not
        new = counts + [0] * k
        for i, c in enumerate(counts):
            new[i + k] += c
        counts = new
    return tuple(counts)


def walsh_averages(x: np.ndarray) -> np.ndarray:
    """The ``R(R+1)/2`` averages ``(x_i + x_j) / 2``, ``i <= j``, sorted ``[R(R+1)/2]``."""
    x = np.asarray(x, dtype=np.float64)
    i, j = np.triu_indices(len(x))
    return np.sort((x[i] + x[j]) / 2)


def hodges_lehmann(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of the centre of ``x [R]`` and the exact signed-rank interval around it.

    The estimate is the median of the Walsh averages; the interval is every centre ``m`` the exact two-sided
    Wilcoxon signed-rank test of ``x - m`` does not reject at ``1 - level``: from the ``(c+1)``-th smallest to the
    ``(c+1)``-th largest Walsh average, ``c`` the largest count with ``P(T+ <= c) <= (1 - level) / 2``. Robust to a
    heavy tail: one run far out moves it by one rank.

    Returns:
        ``(estimate, low, high)``; NaN bounds with fewer than six values or without spread.
    """
    w = walsh_averages(x)
    est = float(np.median(w))
    counts = np.asarray(signed_rank_counts(len(x)), dtype=np.float64)
    below = np.cumsum(counts) / 2.0 ** len(x)  # P(T+ <= c)
    c = int(np.searchsorted(below, (1 - level) / 2, side="right")) - 1
    if c < 0 or no_spread(x):
        return est, math.nan, math.nan
    return est, float(w[c]), float(w[len(w) - 1 - c])


def interval(x: np.ndarray, test: str, level: float = LEVEL) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of ``x [R]`` by ``test``: ``"t"`` (mean, t-interval) or ``"signed-rank"``."""
    if test == "t":
        return t_interval(x, level)
    if test == "signed-rank":
        return hodges_lehmann(x, level)
    raise ValueError(f"unknown test {test!r}; there are {', '.join(TESTS)}")


def mcnemar(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value from the discordant pairs.

    Args:
        only_a: Samples the first model gets right and the second wrong.
        only_b: The reverse.

    Returns:
        The exact binomial p-value of ``only_a`` successes in ``only_a + only_b`` fair trials (1 without discordant
        samples).
    """
    from scipy import stats

    n = only_a + only_b
    return 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)

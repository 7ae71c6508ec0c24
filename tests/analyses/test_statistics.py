"""The findings' tests against scipy and against the definitions written out."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from analyses.statistics import hodges_lehmann, interval, mcnemar, signed_rank_counts, t_interval, walsh_averages


def test_signed_rank_counts_enumerate_every_sign_pattern():
    for n in (1, 2, 5, 8):
        brute = np.zeros(n * (n + 1) // 2 + 1, dtype=int)
        for signs in itertools.product((0, 1), repeat=n):  # 1: rank k + 1 counted in T+
            brute[sum((k + 1) * s for k, s in enumerate(signs))] += 1
        assert signed_rank_counts(n) == tuple(brute)


def test_hodges_lehmann_against_its_definition_and_scipys_exact_wilcoxon():
    """The estimate is the median of the pairwise means; the interval is exactly the set of centres m where scipy's
    exact two-sided signed-rank test of x - m does not reject at 5%: inside its ends it does not, beyond them it
    does. A heavy tail moves it little, where it moves the t-interval far."""
    rng = np.random.default_rng(31)
    for n in (6, 7, 10, 13, 20):
        x = rng.standard_t(2, n) * rng.uniform(0.1, 3) + rng.uniform(-1, 1)
        est, lo, hi = hodges_lehmann(x)
        pairs = [(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)]
        assert est == pytest.approx(np.median(pairs), rel=1e-12)
        np.testing.assert_allclose(walsh_averages(x), np.sort(pairs), rtol=1e-12)
        span = hi - lo
        for m, rejected in ((lo + 1e-6 * span, False), (hi - 1e-6 * span, False), (lo - 1e-6 * span, True),
                            (hi + 1e-6 * span, True)):
            p = stats.wilcoxon(x - m, method="exact").pvalue
            assert (p <= 0.05) == rejected, (n, m, p)
    x = np.array([0.02, 0.025, 0.018, 0.03, 0.022, 0.027, 0.021, 0.024, 0.026, 8.6])  # one run far out
    assert hodges_lehmann(x)[1] > 0 and t_interval(x)[1] < 0
    assert interval(x, "signed-rank") == hodges_lehmann(x) and interval(x, "t") == t_interval(x)
    with pytest.raises(ValueError, match="unknown test"):
        interval(x, "z")


def test_too_few_or_equal_values_give_no_interval():
    rng = np.random.default_rng(32)
    for n in (1, 2, 5):  # five values: the least p of the exact test is 2/32 > 5%
        assert math.isnan(hodges_lehmann(rng.uniform(1, 2, n))[1])
    assert math.isnan(hodges_lehmann(np.full(9, 0.4))[1]) and math.isnan(t_interval(np.full(9, 0.4))[1])
    assert np.isfinite(hodges_lehmann(rng.uniform(1, 2, 6))[1])  # six: the extreme Walsh averages, p = 2/64


def test_mcnemar_against_the_binomial_sum_written_out_and_scipy():
    for a, b in ((0, 0), (3, 0), (12, 4), (40, 55), (7, 7)):
        n = a + b
        tail = sum(math.comb(n, k) for k in range(0, min(a, b) + 1)) / 2 ** n if n else 0.5
        assert mcnemar(a, b) == pytest.approx(min(1.0, 2 * tail), rel=1e-12)
        if n:
            assert mcnemar(a, b) == pytest.approx(stats.binomtest(a, n).pvalue, rel=1e-12)

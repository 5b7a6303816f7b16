"""Quantile confidence intervals: ranks, coverage by simulation, histograms, comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelcaliper.stats.confidence import (
    _binomial_cdf,
    compare_quantile,
    order_statistic_ranks,
    quantile_ci,
    quantile_ci_from_histogram,
    relative_half_width,
)
from modelcaliper.stats.histogram import Histogram


def true_coverage(n: int, p: float, lower: int, upper: int) -> float:
    """P(lower ≤ B ≤ upper − 1) for B ~ Binomial(n, p): the interval's exact coverage."""
    cdf = _binomial_cdf(n, p)
    below_upper = cdf[upper - 1] if upper >= 1 else 0.0
    below_lower = cdf[lower - 1] if lower >= 1 else 0.0
    return float(below_upper - below_lower)


@pytest.mark.parametrize(
    ("n", "percentile", "method", "expected"),
    [
        (100, 50, "exact", (40, 61)),  # the textbook median interval for n = 100
        (10, 50, "exact", (2, 9)),  # small n: P(2 ≤ B ≤ 8) = (1013 − 11) / 1024 = 0.979
        (50, 99, "exact", (48, 51)),  # p99 of 50 samples: F(47) = 0.014; no upper bound (n + 1)
        (5, 50, "exact", (0, 6)),  # too few samples for either bound
        # large n switches to normal ranks: 99 000 ∓ 1.96 × √990 = 99 000 ∓ 61.7, plus 1 above
        (100_000, 99, "auto", (98_938, 99_063)),
        (100, 50, "normal", (40, 61)),  # normal approximation agrees at n = 100
    ],
)
def test_order_statistic_ranks(n, percentile, method, expected):
    lower, upper, _ = order_statistic_ranks(n, percentile, 0.95, method)
    assert (lower, upper) == expected


@pytest.mark.parametrize("n", [1, 7, 30, 100, 1000, 10_000])
@pytest.mark.parametrize("percentile", [10, 50, 90, 99, 99.9])
def test_exact_ranks_always_reach_the_confidence(n, percentile):
    lower, upper, _ = order_statistic_ranks(n, percentile, 0.95, "exact")
    assert true_coverage(n, percentile / 100, lower, upper) >= 0.95


def test_binomial_cdf_matches_direct_sums():
    n, p = 30, 0.3
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    assert _binomial_cdf(n, p) == pytest.approx(np.cumsum(pmf), abs=1e-12)


@pytest.mark.parametrize(
    ("method", "n", "percentile"),
    [
        ("exact", 60, 50),  # small n, median
        ("exact", 200, 90),  # tail quantile
        ("exact", 2000, 99),  # p99 needs a few thousand samples
        ("normal", 400, 50),  # normal ranks, moderate n
        ("normal", 3000, 99),  # normal ranks at the tail
    ],
)
def test_coverage_by_simulation(method, n, percentile):
    # 2000 samples of size n from Exp(1), whose true quantile is −ln(1 − p).
    trials = 2000
    rng = np.random.default_rng(n + int(percentile))
    data = np.sort(rng.standard_exponential((trials, n)), axis=1)
    truth = -math.log1p(-percentile / 100)
    lower, upper, _ = order_statistic_ranks(n, percentile, 0.95, method)
    low = data[:, lower - 1] if lower >= 1 else np.full(trials, -np.inf)
    high = data[:, upper - 1] if upper <= n else np.full(trials, np.inf)
    covered = float(np.mean((low <= truth) & (truth <= high)))
    expected = true_coverage(n, percentile / 100, lower, upper)
    # The simulated rate matches the interval's exact coverage within 4 standard errors...
    assert covered == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / trials))
    # ...and that coverage is about the 95 % asked for.
    assert 0.94 <= expected <= 0.975


def test_quantile_ci_from_samples():
    samples = np.arange(1, 101, dtype=float)[::-1]  # unsorted input is sorted first
    ci = quantile_ci(samples, 50)
    assert (ci.estimate, ci.low, ci.high) == (50.0, 40.0, 61.0)
    assert (ci.n, ci.method, ci.bounded) == (100, "exact", True)
    assert ci.relative_half_width == pytest.approx((61 - 40) / 2 / 50)
    assert relative_half_width(ci) == ci.relative_half_width


def test_unbounded_sides_are_infinite():
    ci = quantile_ci(np.arange(50.0), 99)
    assert ci.high == math.inf and not ci.bounded
    assert relative_half_width(ci) == math.inf


def test_histogram_interval_contains_the_sample_interval():
    samples = np.random.default_rng(1).lognormal(9, 1, 5000).round()
    hist = Histogram()
    hist.record_many(samples)
    exact = quantile_ci(samples, 99)
    approx = quantile_ci_from_histogram(hist, 99)
    assert (approx.lower_rank, approx.upper_rank) == (exact.lower_rank, exact.upper_rank)
    # Widened to slot edges: conservative, and at most 0.1 % wider on each side.
    assert exact.low * (1 - 0.001) <= approx.low <= exact.low
    assert exact.high <= approx.high <= exact.high * (1 + 0.001)
    assert approx.estimate == hist.percentile(99)


@pytest.mark.parametrize(
    ("shift", "expected_change"),
    [
        (1.0, "within noise"),  # the same distribution, another seed
        (1.25, "higher"),  # 25 % slower tail
        (0.8, "lower"),  # 20 % faster tail
    ],
)
@pytest.mark.parametrize("as_histogram", [False, True], ids=["samples", "histograms"])
def test_compare_quantile(shift, expected_change, as_histogram):
    rng = np.random.default_rng(11)
    baseline = rng.lognormal(9, 0.5, 20_000).round()
    candidate = (rng.lognormal(9, 0.5, 20_000) * shift).round()
    if as_histogram:
        a, b = Histogram(), Histogram()
        a.record_many(baseline)
        b.record_many(candidate)
        result = compare_quantile(a, b, 99)
    else:
        result = compare_quantile(baseline, candidate, 99)
    assert result.change == expected_change
    assert result.outside_noise == (expected_change != "within noise")
    assert result.ratio == pytest.approx(shift, rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 10, "percentile": 0}, "strictly between 0 and 100"),
        ({"n": 10, "percentile": 100}, "strictly between 0 and 100"),
        ({"n": 10, "percentile": 50, "confidence": 1.0}, "confidence must be"),
        ({"n": 0, "percentile": 50}, "at least one sample"),
        ({"n": 10, "percentile": 50, "method": "bootstrap"}, "method must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        order_statistic_ranks(**kwargs)

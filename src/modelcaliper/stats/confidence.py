"""Distribution-free confidence intervals for quantiles, and whether two runs really differ.

The math: for n independent samples of a continuous distribution, the number B of samples at
or below the true p-quantile ξ is Binomial(n, p). The order statistic X₍ₗ₎ (1-based rank l) is
≤ ξ exactly when B ≥ l, and X₍ᵤ₎ ≥ ξ when B ≤ u − 1, so

    P(X₍ₗ₎ ≤ ξ ≤ X₍ᵤ₎) ≥ P(l ≤ B ≤ u − 1) = F(u − 1) − F(l − 1),    F = Binomial(n, p) CDF,

whatever the distribution. **Exact** ranks (used up to ``EXACT_MAX_N`` samples) take the
largest l with F(l − 1) ≤ α/2 and the smallest u with F(u − 1) ≥ 1 − α/2, so the coverage is
at least the confidence asked for. The **normal** approximation (larger n) takes
l = ⌊np − z√(np(1−p))⌋ and u = ⌈np + 1 + z√(np(1−p))⌉. A rank below 1 or above n means there
are too few samples to bound that side: the bound is then −∞ or +∞ (p99 of 50 samples has no
upper bound at 95 %).

From a histogram the order statistics are only known to their slot, so the lower bound is the
slot's lowest value and the upper bound the slot's highest: the interval is widened by at most
one slot (≤ 0.1 % of the value with the default layout) and stays conservative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from modelcaliper.stats.histogram import Histogram

__all__ = [
    "EXACT_MAX_N",
    "QuantileComparison",
    "QuantileInterval",
    "compare_quantile",
    "order_statistic_ranks",
    "quantile_ci",
    "quantile_ci_from_histogram",
    "relative_half_width",
]

EXACT_MAX_N = 10_000
"""Up to this many samples the ranks come from the exact binomial distribution."""


@dataclass(frozen=True)
class QuantileInterval:
    """A point estimate of a quantile with its confidence interval (bounds may be ±inf)."""

    percentile: float
    estimate: float
    low: float
    high: float
    lower_rank: int
    upper_rank: int
    n: int
    confidence: float
    method: str

    @property
    def bounded(self) -> bool:
        """Whether both ends of the interval are finite."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width divided by the estimate (inf if unbounded or zero)."""
        return relative_half_width(self)


@dataclass(frozen=True)
class QuantileComparison:
    """Two runs' intervals for one quantile and whether they differ beyond the noise."""

    percentile: float
    baseline: QuantileInterval
    candidate: QuantileInterval
    outside_noise: bool
    change: str
    ratio: float


def _check(percentile: float, confidence: float) -> None:
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be strictly between 0 and 100, got {percentile}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _binomial_cdf(n: int, p: float) -> np.ndarray:
    """F(k) for k = 0..n of Binomial(n, p), computed in log space for stability."""
    k = np.arange(n, dtype=np.float64)
    # log pmf(k+1) - log pmf(k) = log((n-k)/(k+1)) + log(p/(1-p)).
    steps = np.log(n - k) - np.log(k + 1) + (math.log(p) - math.log1p(-p))
    log_pmf = n * math.log1p(-p) + np.concatenate(([0.0], np.cumsum(steps)))
    pmf = np.exp(log_pmf - log_pmf.max())
    cdf = np.cumsum(pmf)
    return cdf / cdf[-1]


def order_statistic_ranks(
    n: int, percentile: float, confidence: float = 0.95, method: str = "auto"
) -> tuple[int, int, str]:
    """1-based ranks (lower, upper) bracketing the quantile; 0 / n+1 mean unbounded."""
    _check(percentile, confidence)
    if n < 1:
        raise ValueError(f"need at least one sample, got {n}")
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_N else "normal"
    p = percentile / 100.0
    alpha = 1.0 - confidence
    if method == "exact":
        cdf = _binomial_cdf(n, p)
        # l - 1 = the largest k with F(k) <= alpha/2 (k = -1, i.e. l = 0, when none is).
        lower = int(np.searchsorted(cdf, alpha / 2, side="right"))
        # u - 1 = the smallest k with F(k) >= 1 - alpha/2.
        upper = int(np.searchsorted(cdf, 1 - alpha / 2, side="left")) + 1
    elif method == "normal":
        z = NormalDist().inv_cdf(1 - alpha / 2)
        spread = z * math.sqrt(n * p * (1 - p))
        lower = math.floor(n * p - spread)
        upper = math.ceil(n * p + 1 + spread)
    else:
        raise ValueError(f"method must be auto, exact or normal, got {method!r}")
    lower = max(lower, 0)
    upper = min(upper, n + 1)
    return lower, upper, method


def _estimate_rank(n: int, percentile: float) -> int:
    """The nearest rank HdrHistogram (and ``Histogram.percentile``) reports for a percentile."""
    return max(1, math.ceil(math.nextafter(percentile, -math.inf) * n / 100.0))


def quantile_ci(
    samples: np.ndarray | Sequence[float],
    percentile: float,
    confidence: float = 0.95,
    method: str = "auto",
    presorted: bool = False,
) -> QuantileInterval:
    """The percentile (0..100, exclusive) of ``samples`` and its confidence interval."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    if not presorted:
        values = np.sort(values)
    n = len(values)
    lower, upper, used = order_statistic_ranks(n, percentile, confidence, method)
    low = float(values[lower - 1]) if lower >= 1 else -math.inf
    high = float(values[upper - 1]) if upper <= n else math.inf
    estimate = float(values[_estimate_rank(n, percentile) - 1])
    return QuantileInterval(percentile, estimate, low, high, lower, upper, n, confidence, used)


def quantile_ci_from_histogram(
    hist: Histogram, percentile: float, confidence: float = 0.95, method: str = "auto"
) -> QuantileInterval:
    """Like ``quantile_ci`` from a histogram; each bound is widened to its slot's edge."""
    indices, counts = hist.nonzero()
    n = int(counts.sum())
    lower, upper, used = order_statistic_ranks(n, percentile, confidence, method)
    cumulative = np.cumsum(counts)

    def slot(rank: int) -> int:
        return int(indices[np.searchsorted(cumulative, rank, side="left")])

    layout = hist.layout
    low = float(layout.lowest_at(slot(lower))) if lower >= 1 else -math.inf
    high = float(layout.highest_at(slot(upper))) if upper <= n else math.inf
    estimate = float(hist.percentile(percentile))
    return QuantileInterval(percentile, estimate, low, high, lower, upper, n, confidence, used)


def relative_half_width(ci: QuantileInterval) -> float:
    """(high − low) / 2 / estimate: the ± precision of the estimate as a fraction."""
    if not ci.bounded or ci.estimate == 0:
        return math.inf
    return (ci.high - ci.low) / 2.0 / abs(ci.estimate)


def _interval(
    data: Histogram | np.ndarray | Sequence[float], percentile: float, confidence: float
) -> QuantileInterval:
    if isinstance(data, Histogram):
        return quantile_ci_from_histogram(data, percentile, confidence)
    return quantile_ci(data, percentile, confidence)


def compare_quantile(
    baseline: Histogram | np.ndarray | Sequence[float],
    candidate: Histogram | np.ndarray | Sequence[float],
    percentile: float = 99.0,
    confidence: float = 0.95,
) -> QuantileComparison:
    """Whether a quantile moved beyond the noise between two runs (histograms or samples).

    The change counts as outside the noise only when the two confidence intervals do not
    overlap — each estimate then lies outside the other's interval. That is deliberately
    conservative (two disjoint 95 % intervals is roughly a 0.5 % false-alarm rate for equal
    widths), because a CI gate that cries wolf gets switched off.
    """
    a = _interval(baseline, percentile, confidence)
    b = _interval(candidate, percentile, confidence)
    if b.low > a.high:
        change = "higher"
    elif b.high < a.low:
        change = "lower"
    else:
        change = "within noise"
    ratio = b.estimate / a.estimate if a.estimate else math.inf
    return QuantileComparison(percentile, a, b, change != "within noise", change, ratio)

"""Chart-sized shapes of a latency histogram: log-spaced bins and a percentile curve.

A stored ``Histogram`` has up to 23 552 slots; a chart needs a few hundred points at most.

**Bins.** Slots are regrouped into a fixed grid of ``BINS_PER_DECADE`` log-spaced bins per
power of ten of microseconds: bin ``b`` covers ``[10^(b/20), 10^((b+1)/20))`` µs, and a slot
goes to the bin holding its lowest value (a slot narrower than the bin never straddles two
bins by more than its own 0.1 % width). The grid is the same for every run, so the bins of
several runs line up for overlaid charts. 1 µs to 1 h is at most 191 bins.

**Percentile curve.** Values at percentiles spaced evenly in "nines" — ``n = −log10(1 − q)``,
so 0 is p0, 1 is p90, 2 is p99, 4 is p99.99 — ``CURVE_STEPS_PER_NINE`` points per nine: the
tail gets as many points as the body, as in HdrHistogram's percentile plots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from modelcaliper.stats.histogram import Histogram

__all__ = ["BINS_PER_DECADE", "CURVE_MAX_NINES", "CURVE_STEPS_PER_NINE", "LABELLED_PERCENTILES",
           "bin_edges_ms", "bin_indices", "histogram_bins", "percentile_curve",
           "percentile_table", "shared_bins"]

BINS_PER_DECADE = 20
"""Histogram bins per power of ten."""

CURVE_STEPS_PER_NINE = 10
"""Points of the percentile curve per nine (p0→p90, p90→p99, ...)."""

CURVE_MAX_NINES = 4
"""The curve ends at p99.99."""

LABELLED_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
"""Percentiles tabulated next to the charts."""


def _bin_of(values_us: np.ndarray) -> np.ndarray:
    # The small epsilon keeps an exact power of ten (log10 may round it down) in its own bin.
    safe = np.maximum(values_us.astype(np.float64), 1.0)
    return np.floor(np.log10(safe) * BINS_PER_DECADE + 1e-9).astype(np.int64)


def bin_edges_ms(bin_index: int) -> tuple[float, float]:
    """The lower and upper edge of grid bin ``bin_index``, in milliseconds."""
    return (10 ** (bin_index / BINS_PER_DECADE) / 1e3,
            10 ** ((bin_index + 1) / BINS_PER_DECADE) / 1e3)


def bin_indices(hist: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Grid bin indices (ascending) and counts of the non-empty bins of ``hist``."""
    slots, counts = hist.nonzero()
    if not len(slots):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bins = _bin_of(hist.layout.lowest_at(slots))
    unique, inverse = np.unique(bins, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts).astype(np.int64)


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def histogram_bins(hist: Histogram) -> dict[str, Any]:
    """``{bin, low_ms, high_ms, count, total}``: the non-empty grid bins of ``hist``."""
    bins, counts = bin_indices(hist)
    edges = [bin_edges_ms(int(b)) for b in bins]
    return {"bin": bins.tolist(), "low_ms": [_round(lo) for lo, _ in edges],
            "high_ms": [_round(hi) for _, hi in edges], "count": counts.tolist(),
            "total": int(counts.sum())}


def shared_bins(histograms: Sequence[Histogram | None]) -> dict[str, Any]:
    """Bins of several histograms on one grid: ``{bin, low_ms, high_ms, fraction: [[...]]}``;
    each run's counts are divided by its total, so runs of different sizes overlay."""
    per_run = [bin_indices(h) if h is not None else (np.zeros(0, np.int64),) * 2
               for h in histograms]
    grid = np.unique(np.concatenate([bins for bins, _ in per_run])) if per_run else np.zeros(0)
    fractions = []
    for bins, counts in per_run:
        row = np.zeros(len(grid))
        total = counts.sum()
        if total:
            row[np.searchsorted(grid, bins)] = counts / total
        fractions.append([_round(v) for v in row.tolist()])
    edges = [bin_edges_ms(int(b)) for b in grid]
    return {"bin": [int(b) for b in grid], "low_ms": [_round(lo) for lo, _ in edges],
            "high_ms": [_round(hi) for _, hi in edges], "fraction": fractions}


def _curve_percentiles() -> list[float]:
    steps = CURVE_STEPS_PER_NINE * CURVE_MAX_NINES
    return [0.0] + [_round(100.0 * (1.0 - 10 ** (-k / CURVE_STEPS_PER_NINE)), 10)
                    for k in range(1, steps + 1)]


def percentile_curve(hist: Histogram) -> dict[str, Any]:
    """``{nines, percentile, ms}``: the value at percentiles from p0 to p99.99, evenly in nines."""
    qs = _curve_percentiles()
    values = hist.percentiles(qs) / 1e3 if hist.count else np.zeros(len(qs))
    nines = [_round(-math.log10(1.0 - q / 100.0), 6) for q in qs]
    return {"nines": nines, "percentile": qs, "ms": [_round(v) for v in values.tolist()]}


def percentile_table(hist: Histogram,
                     percentiles: Iterable[float] = LABELLED_PERCENTILES) -> list[dict[str, Any]]:
    """``[{percentile, ms}]`` at the labelled percentiles, then the maximum (percentile 100)."""
    qs = list(percentiles)
    values = (hist.percentiles(qs) / 1e3).tolist() if hist.count else [0.0] * len(qs)
    rows = [{"percentile": q, "ms": _round(v)} for q, v in zip(qs, values, strict=True)]
    rows.append({"percentile": 100.0, "ms": _round(hist.max / 1e3)})
    return rows

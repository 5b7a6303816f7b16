"""Measurement statistics: HDR histograms, per-interval series, quantile confidence, hlog files."""

from __future__ import annotations

from modelcaliper.stats.confidence import (
    QuantileComparison,
    QuantileInterval,
    compare_quantile,
    quantile_ci,
    quantile_ci_from_histogram,
    relative_half_width,
)
from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Bucket, Histogram, Layout
from modelcaliper.stats.hlog import decode_histogram, encode_histogram, read_hlog, write_hlog
from modelcaliper.stats.intervals import IntervalSeries, Outcome

__all__ = [
    "DEFAULT_LAYOUT",
    "Bucket",
    "Histogram",
    "IntervalSeries",
    "Layout",
    "Outcome",
    "QuantileComparison",
    "QuantileInterval",
    "compare_quantile",
    "decode_histogram",
    "encode_histogram",
    "quantile_ci",
    "quantile_ci_from_histogram",
    "read_hlog",
    "relative_half_width",
    "write_hlog",
]

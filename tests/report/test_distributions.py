"""Chart shapes of a histogram: log bins on a shared grid, the percentile curve, the table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.report.distributions import (
    BINS_PER_DECADE,
    bin_edges_ms,
    bin_indices,
    histogram_bins,
    percentile_curve,
    percentile_table,
    shared_bins,
)
from modelcaliper.stats.histogram import Histogram


def _hist(values) -> Histogram:
    hist = Histogram()
    hist.record_many(np.asarray(values, dtype=np.int64))
    return hist


@pytest.mark.parametrize("value_us, expected_bin", [
    (1, 0),            # 1 µs opens the grid
    (0, 0),            # a clamped 0 goes to the first bin
    (10, 20),          # an exact power of ten starts its decade, not the bin below
    (1000, 60),        # 1 ms
    (1_000_000, 119),  # 1 s sits in a 1 024 µs slot starting at 999 424 µs: the bin below
    (1_048_576, 120),  # 2^20 µs starts its own slot, 10^(120.4/20)
    (1_122, 60),       # just below 10^(61/20) µs = 1 122.02 µs
    (1_123, 61),       # just above it
])
def test_values_land_in_their_log_bin(value_us, expected_bin):
    bins, counts = bin_indices(_hist([value_us]))
    assert bins.tolist() == [expected_bin] and counts.tolist() == [1]


def test_bin_edges_are_twenty_per_decade():
    assert bin_edges_ms(60) == pytest.approx((1.0, 10 ** (61 / 20) / 1e3))
    assert bin_edges_ms(80)[0] == pytest.approx(10.0)
    assert BINS_PER_DECADE == 20


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3_600_000_000), min_size=1, max_size=300))
def test_bins_keep_every_sample_and_contain_it(values):
    hist = _hist(values)
    bins = histogram_bins(hist)
    assert sum(bins["count"]) == bins["total"] == len(values)
    assert bins["bin"] == sorted(set(bins["bin"]))
    for value in values:  # each sample's slot low value lies in one listed bin
        low_us = int(hist.layout.lowest_at(hist.layout.index_of_value(value)))
        found = [lo for lo, hi in zip(bins["low_ms"], bins["high_ms"], strict=True)
                 if lo * 1e3 * (1 - 1e-5) <= max(low_us, 1) < hi * 1e3 * (1 + 1e-5)]
        assert found


def test_shared_bins_line_runs_up_and_normalise_each():
    a, b = _hist([100, 100, 2000]), _hist([2000, 50_000])
    shared = shared_bins([a, None, b])
    assert shared["bin"] == sorted(set(bin_indices(a)[0]) | set(bin_indices(b)[0]))
    assert [sum(row) for row in shared["fraction"]] == pytest.approx([1.0, 0.0, 1.0])
    assert shared["fraction"][0][0] == pytest.approx(2 / 3)


def test_percentile_curve_is_p0_to_p9999_evenly_in_nines():
    hist = _hist(np.arange(1, 100_001))
    curve = percentile_curve(hist)
    assert len(curve["nines"]) == 41
    assert curve["nines"][0] == 0 and curve["nines"][-1] == pytest.approx(4)
    assert curve["percentile"][10] == pytest.approx(90) and curve["percentile"][20] == \
        pytest.approx(99)
    assert curve["ms"] == sorted(curve["ms"])
    assert curve["ms"][20] == pytest.approx(hist.percentile(99) / 1e3)


def test_percentile_table_ends_with_the_maximum():
    hist = _hist([1000] * 99 + [50_000])
    table = percentile_table(hist)
    assert [row["percentile"] for row in table] == [50, 90, 99, 99.9, 99.99, 100]
    assert table[-1]["ms"] == pytest.approx(hist.max / 1e3)
    assert table[0]["ms"] == pytest.approx(hist.percentile(50) / 1e3)

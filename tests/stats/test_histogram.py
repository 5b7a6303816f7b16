"""HDR histogram: layout, percentile semantics, precision, merging, serialisation and speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelcaliper.errors import DataError
from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Bucket, Histogram, Layout

HIGHEST = DEFAULT_LAYOUT.highest_value
VALUES = hnp.arrays(np.int64, st.integers(1, 3000),
                    elements=st.integers(min_value=0, max_value=HIGHEST))
PERCENTILES = st.floats(min_value=0.0, max_value=100.0)


def histogram_of(values) -> Histogram:
    hist = Histogram()
    hist.record_many(np.asarray(values))
    return hist


def nearest_rank(sorted_values: np.ndarray, q: float) -> int:
    """The exact sample value at HdrHistogram's rank for percentile q."""
    rank = max(1, math.ceil(math.nextafter(q, -math.inf) * len(sorted_values) / 100.0))
    return int(sorted_values[rank - 1])


# --- layout -------------------------------------------------------------------------------------


def test_default_layout_size():
    # 1 µs .. 1 h at 3 digits: 22 buckets of 1 024 half-sub-buckets, plus the first half.
    assert (DEFAULT_LAYOUT.length, DEFAULT_LAYOUT.bucket_count) == (23552, 22)


@pytest.mark.interop
@pytest.mark.parametrize(
    "settings_",
    [
        (1, 3_600_000_000, 3),  # the default
        (1, 3_600_000_000, 2),  # 2 digits: 128 sub-buckets per half
        (1, 1_000_000, 3),  # a smaller range needs fewer buckets
        (1000, 3_600_000_000_000, 3),  # nanoseconds: unit magnitude 9 (512 ns resolution)
        (7, 10**15, 5),  # odd lowest, 5 digits, a huge range
        (1, 2, 1),  # the smallest range
    ],
)
def test_layout_matches_the_reference_implementation(settings_):
    reference = HdrHistogram(*settings_)
    layout = Layout(*settings_)
    assert (layout.length, layout.bucket_count) == (reference.counts_len, reference.bucket_count)
    values = np.unique(np.geomspace(settings_[0], settings_[1], 300).astype(np.int64))
    expected = [reference.get_counts_array_index(int(v)) for v in values]
    assert layout.index_of(values).tolist() == expected


def test_every_slot_is_within_a_tenth_of_a_percent():
    index = np.arange(DEFAULT_LAYOUT.length)
    low, high = DEFAULT_LAYOUT.lowest_at(index), DEFAULT_LAYOUT.highest_at(index)
    assert np.all(high >= low)
    assert np.all(low[1:] == high[:-1] + 1)  # slots tile the range without gaps or overlaps
    assert np.all((high - low)[low > 0] / low[low > 0] < 0.001)
    assert high[-1] >= HIGHEST
    assert np.array_equal(DEFAULT_LAYOUT.index_of(low), index)  # each slot's edges map back
    assert np.array_equal(DEFAULT_LAYOUT.index_of(high), index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"significant_digits": 6}, "significant_digits must be 0..5"),
        ({"lowest_value": 0}, "need 1 ≤ lowest_value"),
        ({"lowest_value": 10, "highest_value": 15}, "2 × lowest_value ≤ highest_value"),
        ({"highest_value": 2**60}, "highest_value ≤ 2\\*\\*53"),
    ],
)
def test_layout_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Layout(**kwargs)


# --- percentile semantics ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        (range(1, 101), 50, 50),  # nearest rank: the 50th of 100
        (range(1, 101), 50.5, 51),  # ceil(50.5) = 51st
        (range(1, 1001), 99.9, 999),  # not 1000: the ulp nudge keeps 0.999 × 1000 at rank 999
        (range(1, 1001), 100, 1000),  # the maximum
        (range(1, 1001), 0, 1),  # q = 0 answers the lowest equivalent of the minimum
        ([5], 1e-9, 5),  # tiny q still reaches the first value (rank ≥ 1)
        ([3000, 3001], 100, 3001),  # 3000 and 3001 share a 2-wide slot: highest equivalent
        ([3000, 3001], 0, 3000),  # ... and its lowest for q = 0
        ([1_000_000] * 3, 50, 1_000_447),  # a 512-wide slot: upper edge, +0.045 %
    ],
)
def test_percentile_semantics_match_hdrhistogram(values, q, expected):
    assert histogram_of(list(values)).percentile(q) == expected


@given(values=VALUES, qs=st.lists(PERCENTILES, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_percentiles_are_within_relative_error_of_the_exact_quantile(values, qs):
    hist = histogram_of(values)
    ordered = np.sort(values)
    for q, got in zip(qs, hist.percentiles(qs).tolist(), strict=True):
        exact = nearest_rank(ordered, q)
        if q == 0:
            assert exact - exact / 1000 <= got <= exact  # lowest equivalent value
        else:
            assert exact <= got <= exact + exact / 1000  # highest equivalent value
        assert DEFAULT_LAYOUT.index_of(np.array([got])) == DEFAULT_LAYOUT.index_of(
            np.array([exact]))


@given(values=hnp.arrays(np.int64, st.integers(50, 2000), elements=st.integers(1, 10**9)),
       q=st.sampled_from([1, 10, 25, 50, 75, 90, 95, 99]))
@settings(max_examples=100, deadline=None)
def test_percentiles_agree_with_numpy_inverted_cdf(values, q):
    # For whole percentiles numpy's nearest-rank estimator lands on the same rank.
    exact = float(np.percentile(values, q, method="inverted_cdf"))
    got = histogram_of(values).percentile(q)
    assert exact <= got <= exact * 1.001


def test_summary_statistics_match_hdrhistogram_conventions():
    hist = histogram_of([1, 2, 3, 4, 10_000])
    assert hist.count == 5
    assert hist.min == 1
    assert hist.max == 10_007  # highest equivalent value of 10 000's 8-wide slot
    assert hist.mean == pytest.approx((1 + 2 + 3 + 4 + 10_004) / 5)  # slot middles
    middles = np.array([1, 2, 3, 4, 10_004.0])
    assert hist.stdev == pytest.approx(float(np.sqrt(np.mean((middles - middles.mean()) ** 2))))


def test_an_empty_histogram_answers_zero():
    hist = Histogram()
    assert (hist.count, hist.min, hist.max, hist.mean, hist.stdev) == (0, 0, 0, 0.0, 0.0)
    assert hist.percentile(99) == 0
    assert list(hist.iter_buckets()) == []


@pytest.mark.parametrize("q", [-1, 100.5, float("nan")])
def test_percentile_out_of_range_is_an_error(q):
    with pytest.raises(ValueError, match="within 0..100"):
        histogram_of([1, 2]).percentile(q)


# --- recording -----------------------------------------------------------------------------------


def test_out_of_range_values_are_clamped_and_counted():
    hist = Histogram()
    hist.record_many(np.array([-5, 0, 7, HIGHEST, HIGHEST + 1, 10 * HIGHEST]))
    hist.record(-1)
    assert (hist.clamped_low, hist.clamped_high) == (2, 2)
    assert hist.count == 7
    assert hist.min == 0
    assert hist.percentile(100) == DEFAULT_LAYOUT.highest_at(
        DEFAULT_LAYOUT.index_of(np.array([HIGHEST])))[0]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([1.4, 1.6, 2.5]), [1, 2, 2]),  # floats round half to even, like numpy
        (np.array([3, 4], dtype=np.uint64), [3, 4]),  # unsigned input
        (np.array([True, False]), [0, 1]),  # booleans count as 0 and 1
        ([10, 20], [10, 20]),  # plain lists
    ],
)
def test_record_many_accepts_numeric_arrays(values, expected):
    assert histogram_of(values) == histogram_of(np.array(expected))


def test_record_many_refuses_nan_and_text():
    with pytest.raises(ValueError, match="NaN"):
        histogram_of(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="needs numbers"):
        histogram_of(np.array(["a"]))


@given(values=VALUES)
@settings(max_examples=50, deadline=None)
def test_record_one_by_one_equals_record_many(values):
    single = Histogram()
    for value in values.tolist():
        single.record(value)
    assert single == histogram_of(values)


def test_record_with_a_count():
    hist = Histogram()
    hist.record(250, count=4)
    assert hist.count == 4 and hist.percentile(50) == 250


# --- merging, buckets, bytes ---------------------------------------------------------------------


@given(a=VALUES, b=VALUES)
@settings(max_examples=60, deadline=None)
def test_merge_equals_the_histogram_of_concatenated_data(a, b):
    merged = histogram_of(a)
    merged.merge(histogram_of(b))
    assert merged == histogram_of(np.concatenate([a, b]))
    assert Histogram.merged([histogram_of(a), histogram_of(b)]) == merged


def test_merge_refuses_other_layouts():
    with pytest.raises(ValueError, match="different layouts"):
        Histogram().merge(Histogram(Layout(1, 1_000_000, 3)))


@given(values=VALUES)
@settings(max_examples=60, deadline=None)
def test_buckets_cover_every_value(values):
    hist = histogram_of(values)
    buckets = list(hist.iter_buckets())
    assert all(isinstance(b, Bucket) and b.low <= b.high and b.count > 0 for b in buckets)
    assert sum(b.count for b in buckets) == len(values)
    assert all(x.high < y.low for x, y in zip(buckets, buckets[1:], strict=False))
    for value in values.tolist()[:50]:
        assert any(b.low <= value <= b.high for b in buckets)


@given(values=VALUES, low=st.integers(0, 5), high=st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_bytes_round_trip(values, low, high):
    hist = histogram_of(values)
    hist.clamped_low, hist.clamped_high = low, high
    assert Histogram.from_bytes(hist.to_bytes()) == hist


def test_bytes_round_trip_keeps_the_layout_and_stays_compact():
    hist = Histogram(Layout(1000, 3_600_000_000_000, 2))
    hist.record_many(np.random.default_rng(0).lognormal(14, 1, 100_000))
    data = hist.to_bytes()
    assert Histogram.from_bytes(data) == hist
    assert len(data) < hist.nbytes / 10
    assert len(Histogram().to_bytes()) < 64  # an empty histogram is just the header


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:10], "shorter than the header"),  # truncated header
        (lambda b: b"XXXX" + b[4:], "bad magic"),  # not ours
        (lambda b: b[:4] + bytes([9]) + b[5:], "format version 9"),  # a future version
        (lambda b: b[:44] + b"garbage", "do not decompress"),  # corrupt counts
    ],
)
def test_from_bytes_rejects_damaged_data(mangle, message):
    data = histogram_of([1, 5, 900]).to_bytes()
    with pytest.raises(DataError, match=message):
        Histogram.from_bytes(mangle(data))


def test_equality_and_copy():
    hist = histogram_of([1, 2, 3])
    twin = hist.copy()
    assert twin == hist and twin is not hist
    twin.record(4)
    assert twin != hist
    assert hist != "not a histogram"


# --- size and speed ------------------------------------------------------------------------


def test_memory_size():
    assert Histogram().nbytes == 23552 * 8  # 184 KiB of int64 counts


def test_record_many_is_fast():
    values = np.random.default_rng(0).lognormal(8, 2, 2_000_000)
    hist = Histogram()
    best_s = math.inf
    for _ in range(3):
        start = time.perf_counter()
        hist.record_many(values)
        best_s = min(best_s, time.perf_counter() - start)
    rate_per_s = len(values) / best_s
    assert rate_per_s >= 10_000_000, f"{rate_per_s / 1e6:.1f} M values/s"

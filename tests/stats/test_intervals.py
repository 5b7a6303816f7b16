"""Interval series: per-second counts and percentiles, incremental recording and merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Histogram
from modelcaliper.stats.intervals import IntervalSeries, Outcome

RECORDS = st.lists(
    st.tuples(st.floats(0, 20, allow_nan=False), st.integers(0, 5_000_000),
              st.sampled_from(list(Outcome))),
    max_size=300,
)


def series_of(records, **kwargs) -> IntervalSeries:
    series = IntervalSeries(**kwargs)
    for completion_s, latency_us, outcome in records:
        series.record(completion_s, latency_us, outcome)
    return series


def test_rows_count_outcomes_and_percentiles_per_second():
    series = series_of([
        (0.1, 1000, "ok"),  # second 0
        (0.9, 3000, Outcome.OK),
        (0.95, 250_000, "timeout"),  # timeouts count towards the latency tail
        (2.5, 500, 1),  # second 2: an error, by code; second 1 is a gap
    ])
    no_lag = {"lag_p99_us": None, "lag_max_us": None}  # no schedule lag was recorded
    assert series.rows() == [
        {"start_s": 0.0, "count": 3, "ok": 2, "errors": 0, "timeouts": 1,
         "p50_us": 3007, "p99_us": 250_879, **no_lag},  # upper slot edges, 2 digits (≤ 0.8 %)
        {"start_s": 1.0, "count": 0, "ok": 0, "errors": 0, "timeouts": 0,
         "p50_us": None, "p99_us": None, **no_lag},
        {"start_s": 2.0, "count": 1, "ok": 0, "errors": 1, "timeouts": 0,
         "p50_us": 501, "p99_us": 501, **no_lag},
    ]
    assert len(series) == 3


@pytest.mark.parametrize(
    ("kwargs", "expected_starts"),
    [
        ({}, [0.0, 1.0, 2.0, 3.0]),  # one-second intervals by default
        ({"interval_s": 2.0}, [0.0, 2.0]),  # wider intervals
        ({"interval_s": 0.5}, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),  # narrower
    ],
)
def test_interval_width(kwargs, expected_starts):
    series = series_of([(0.2, 10, "ok"), (3.7, 10, "ok")], **kwargs)
    assert [row["start_s"] for row in series.rows()] == expected_starts


def test_ok_latency_only_leaves_failures_out_of_the_percentiles():
    records = [(0.5, 100, "ok"), (0.6, 9_000_000, "timeout"), (0.7, 5, "error")]
    everything = series_of(records).rows()[0]
    ok_only = series_of(records, ok_latency_only=True).rows()[0]
    assert (everything["count"], ok_only["count"]) == (3, 3)  # counts are always complete
    assert everything["p99_us"] > 8_000_000
    assert ok_only["p50_us"] == ok_only["p99_us"] == 100


def test_custom_percentiles():
    series = series_of([(0.0, v, "ok") for v in range(1, 1001)])
    row = series.rows(percentiles=(90, 99.9))[0]
    assert (row["p90_us"], row["p99_9_us"]) == (903, 999)  # 900 sits in a 4-wide slot


@given(records=RECORDS)
@settings(max_examples=60, deadline=None)
def test_vectorised_and_single_recording_agree(records):
    single = series_of(records)
    batch = IntervalSeries()
    if records:
        completion, latency, outcome = map(np.array, zip(*records, strict=True))
        batch.record_many(completion, latency, outcome.astype(np.int64))
    assert batch.rows() == single.rows()


@given(records=RECORDS, workers=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_merging_worker_series_equals_one_series(records, workers):
    whole = series_of(records)
    shares = [series_of(records[i::workers]) for i in range(workers)]
    merged = IntervalSeries()
    for share in shares:
        merged.merge(share)
    assert merged.rows() == whole.rows()


@given(records=RECORDS)
@settings(max_examples=60, deadline=None)
def test_interval_histograms_hold_exactly_that_intervals_latencies(records):
    series = series_of(records)
    for index in range(21):
        expected = Histogram(series.layout)
        expected.record_many(np.array([lat for t, lat, _ in records if int(t // 1) == index],
                                      dtype=np.int64))
        assert series.histogram(index) == expected


def test_many_records_flush_in_batches_and_stay_small():
    rng = np.random.default_rng(0)
    series = IntervalSeries()
    completion = np.sort(rng.uniform(0, 60, 600_000))  # 10 000 requests/s for a minute
    latency = rng.lognormal(9, 0.5, len(completion))
    series.record_many(completion, latency, Outcome.OK)
    rows = series.rows()
    assert len(rows) == 60 and sum(r["count"] for r in rows) == 600_000
    # Sparse 2-digit storage: a few KiB per second, against 184 KiB for a dense 3-digit one.
    stored_bytes = sum(i.slots.nbytes + i.counts.nbytes for i in series._intervals.values())
    assert stored_bytes / 60 < 8_000


def test_three_digit_interval_histograms_on_request():
    series = series_of([(0.0, 3000, "ok")], layout=DEFAULT_LAYOUT)
    assert series.rows()[0]["p50_us"] == 3001


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.record(-0.1, 5, "ok"), ValueError, "≥ 0 seconds"),  # before the run
        (lambda s: s.record(0.1, 5, "lost"), ValueError, "ok, error or timeout"),  # bad name
        (lambda s: s.record_many([0.1], [5], [7]), ValueError, "Outcome codes"),  # bad code
        (lambda s: s.record_many([0.1, 0.2], [5], 0), ValueError, "2 values"),  # shape mismatch
        (lambda s: s.record_many([0.1], [float("nan")], 0), ValueError, "NaN"),  # no latency
        (lambda s: s.merge(IntervalSeries(interval_s=2.0)), ValueError, "cannot merge"),
    ],
)
def test_bad_input_is_refused(call, error, message):
    series = IntervalSeries()
    with pytest.raises(error, match=message):
        call(series)
        series.rows()


def test_empty_series():
    assert IntervalSeries().rows() == []
    assert len(IntervalSeries()) == 0
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        IntervalSeries(interval_s=0)


LAGS = st.lists(st.tuples(st.floats(0, 20, allow_nan=False), st.integers(0, 2_000_000)),
                max_size=300)


def test_schedule_lag_is_bucketed_by_intended_time():
    series = IntervalSeries(layout=DEFAULT_LAYOUT)
    series.record_many([1.2], [500], Outcome.OK)  # one completion in second 1
    series.record_lag_many([0.5, 0.6, 2.1], [40.0, 130_000.0, 7.5])  # a stall in second 0
    rows = series.rows()
    assert [r["start_s"] for r in rows] == [0.0, 1.0, 2.0]  # lag-only seconds are rows too
    assert (rows[0]["count"], rows[0]["lag_max_us"]) == (0, 130_000.0)  # exact max
    assert rows[0]["lag_p99_us"] == 130_000.0  # never above the max (slot edge is 130 047)
    assert (rows[1]["lag_p99_us"], rows[1]["lag_max_us"]) == (None, None)  # nothing due then
    assert rows[2]["lag_max_us"] == 7.5


@given(lags=LAGS, workers=st.integers(1, 4))
@settings(max_examples=60, deadline=None)
def test_lag_rows_equal_the_raw_lags_and_merge_exactly(lags, workers):
    def series_of_lags(part):
        series = IntervalSeries(layout=DEFAULT_LAYOUT)
        if part:
            intended, lag = map(np.array, zip(*part, strict=True))
            series.record_lag_many(intended, lag)
        return series

    whole = series_of_lags(lags)
    merged = IntervalSeries(layout=DEFAULT_LAYOUT)
    for i in range(workers):
        merged.merge(series_of_lags(lags[i::workers]))
    assert merged.rows() == whole.rows()
    for row in whole.rows():
        due = [lag for t, lag in lags if int(t // 1) == row["start_s"]]
        if not due:
            assert row["lag_max_us"] is None
            continue
        expected = Histogram(DEFAULT_LAYOUT)
        expected.record_many(np.array(due, dtype=np.int64))
        assert row["lag_max_us"] == max(due)
        assert row["lag_p99_us"] == min(expected.percentile(99), max(due))


def test_bad_lag_input_is_refused():
    with pytest.raises(ValueError, match="≥ 0 seconds"):
        IntervalSeries().record_lag_many([-1.0], [5.0])
    with pytest.raises(ValueError, match="2 values"):
        IntervalSeries().record_lag_many([0.1, 0.2], [5.0])

"""The Prometheus text format: parsing, histograms, and histogram_quantile-style estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.server.metrics import LATENCY_US_BUCKETS, Metrics
from modelcaliper.targets.exposition import (
    Sample,
    bucket_quantile,
    histograms_of,
    parse_exposition,
    series,
)

INF = math.inf

PARSE_CASES = [
    # TF Serving's names: colons, HELP and TYPE lines
    ('# HELP :tensorflow:serving:request_count The number of requests.\n'
     '# TYPE :tensorflow:serving:request_count counter\n'
     ':tensorflow:serving:request_count{model_name="mlp",status="OK"} 12\n',
     [Sample(":tensorflow:serving:request_count", (("model_name", "mlp"), ("status", "OK")),
             12.0)], 0),
    # label escapes: backslash, quote, newline
    ('m{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb"} 1\n',
     [Sample("m", (("nl", "a\nb"), ("path", "C:\\dir"), ("quote", 'say "hi"')), 1.0)], 0),
    # an unknown escape is kept as written
    ('m{a="x\\ty"} 1\n', [Sample("m", (("a", "x\\ty"),), 1.0)], 0),
    # +Inf bucket bound and special values
    ('h_bucket{le="+Inf"} 5\ng -Inf\n', [Sample("h_bucket", (("le", "+Inf"),), 5.0),
                                          Sample("g", (), -INF)], 0),
    # a timestamp after the value is ignored
    ("up 3 1700000000000\n", [Sample("up", (), 3.0)], 0),
    # a trailing comma in the label set, spaces around tokens
    ('m{ a = "1" , } 2\n', [Sample("m", (("a", "1"),), 2.0)], 0),
    # an OpenMetrics exemplar after the value is ignored
    ('h_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4 1.6e9\n',
     [Sample("h_bucket", (("le", "0.5"),), 3.0)], 0),
    # comments, # EOF and blank lines are skipped; untyped samples kept
    ("# just a comment\n\n# EOF\nlonely_total 4\n", [Sample("lonely_total", (), 4.0)], 0),
    # label values may hold '#', '}' and ','
    ('m{a="x # }, y"} 5\n', [Sample("m", (("a", "x # }, y"),), 5.0)], 0),
    # the quoted metric name of the UTF-8 form
    ('{"my.metric", a="b"} 4\n', [Sample("my.metric", (("a", "b"),), 4.0)], 0),
    # scientific notation
    ("m 1.5e-3\n", [Sample("m", (), 1.5e-3)], 0),
    # malformed lines are counted and skipped, the good ones kept
    ('bad{a="1" 2\n= 3\nnovalue\nm notanumber\nm 1 2 3\nok 1\n', [Sample("ok", (), 1.0)], 5),
]


@pytest.mark.parametrize(("text", "samples", "skipped"), PARSE_CASES)
def test_parse_exposition(text, samples, skipped):
    parsed = parse_exposition(text)
    assert parsed.samples == samples
    assert parsed.skipped == skipped


def test_parse_keeps_types_and_nan():
    parsed = parse_exposition("# TYPE a gauge\n# TYPE b HISTOGRAM\na NaN\n")
    assert parsed.types == {"a": "gauge", "b": "histogram"}
    assert math.isnan(parsed.samples[0].value)


HISTOGRAM_TEXT = """\
# TYPE lat histogram
lat_bucket{api="x",le="2"} 7
lat_bucket{api="x",le="1"} 4
lat_bucket{api="x",le="+Inf"} 8
lat_sum{api="x"} 9.5
lat_count{api="x"} 8
lat_bucket{api="y",le="1"} 0
lat_bucket{api="y",le="+Inf"} 0
lat_sum{api="y"} 0
lat_count{api="y"} 0
# TYPE sm summary
sm{quantile="0.5"} 3
sm_sum 30
sm_count 10
untyped_bucket{le="1"} 1
untyped_bucket{le="+Inf"} 2
"""


def test_histograms_of_groups_buckets_sum_and_count():
    found = histograms_of(parse_exposition(HISTOGRAM_TEXT))
    x = found[("lat", (("api", "x"),))]
    assert x.sorted_buckets() == [(1.0, 4.0), (2.0, 7.0), (INF, 8.0)]
    assert (x.sum, x.count) == (9.5, 8.0)
    assert found[("lat", (("api", "y"),))].count == 0
    # A summary: sum and count, no buckets (its quantiles cannot be diffed).
    summary = found[("sm", ())]
    assert (summary.buckets, summary.sum, summary.count) == ([], 30.0, 10.0)
    # An untyped family with le-labelled _bucket samples is a histogram too.
    assert found[("untyped", ())].sorted_buckets() == [(1.0, 1.0), (INF, 2.0)]


def test_sorted_buckets_are_made_monotonic():
    found = histograms_of(parse_exposition(
        'h_bucket{le="1"} 5\nh_bucket{le="2"} 4.999999\nh_bucket{le="+Inf"} 6\n'))
    assert found[("h", ())].sorted_buckets() == [(1.0, 5.0), (2.0, 5.0), (INF, 6.0)]


BUCKETS = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (INF, 40.0)]

QUANTILE_CASES = [
    (0.25, BUCKETS, 1.0),  # rank 10 ends the first bucket, which starts at 0
    (0.5, BUCKETS, 2.0),  # rank 20 ends the second bucket
    (0.75, BUCKETS, 3.0),  # rank 30: halfway through (2, 4]
    (0.1, BUCKETS, 0.4),  # rank 4: 4/10 of (0, 1]
    (0.0, BUCKETS, 0.0),  # the lowest bound
    (0.9, [(1.0, 5.0), (INF, 10.0)], 1.0),  # rank in +Inf: the largest finite bound
    (0.5, [(-1.0, 5.0), (INF, 5.0)], -1.0),  # a first bound ≤ 0 is answered as it is
    (0.5, [(1.0, 0.0), (INF, 0.0)], None),  # no observations
    (0.5, [(1.0, 3.0), (2.0, 5.0)], None),  # no +Inf bucket: not a histogram
    (1.5, BUCKETS, None),  # q outside 0..1
    (0.5, [(INF, 3.0)], None),  # only +Inf: nothing finite to answer
]


@pytest.mark.parametrize(("q", "buckets", "expected"), QUANTILE_CASES)
def test_bucket_quantile(q, buckets, expected):
    got = bucket_quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


BOUNDS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, INF)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(0.0, 60.0), min_size=1, max_size=300),
       q=st.floats(0.01, 1.0))
def test_quantile_lies_in_the_bucket_of_the_true_order_statistic(values, q):
    counts = np.searchsorted(BOUNDS, np.sort(values), side="left")
    cumulative = [(b, float(np.sum(counts <= i))) for i, b in enumerate(BOUNDS)]
    estimate = bucket_quantile(q, cumulative)
    assert estimate is not None
    # The ceil(q·n)-th smallest value falls in some bucket; the estimate is inside it
    # (capped at the largest finite bound when that bucket is +Inf).
    true_value = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    index = int(np.searchsorted(BOUNDS, true_value, side="left"))
    lower = BOUNDS[index - 1] if index else 0.0
    upper = BOUNDS[index] if math.isfinite(BOUNDS[index]) else BOUNDS[-2]
    assert min(lower, upper) <= estimate <= upper
    # And estimates never decrease with q.
    assert bucket_quantile(q / 2, cumulative) <= estimate


def test_reads_back_what_the_embedded_server_renders():
    metrics = Metrics()
    observed = [15.0, 40.0, 40.0, 900.0, 2e6]
    for value in observed:
        metrics.observe(":tensorflow:serving:request_latency", {"model_name": 'a"b\\c\nd'},
                        value, LATENCY_US_BUCKETS)
    metrics.inc("caliper_server_rejected_total", {"reason": "overload"}, 3)
    parsed = parse_exposition(metrics.render())
    assert parsed.skipped == 0
    hist = histograms_of(parsed)[(":tensorflow:serving:request_latency",
                                  (("model_name", 'a"b\\c\nd'),))]
    assert hist.count == len(observed)
    assert hist.sum == pytest.approx(sum(observed), rel=1e-5)
    buckets = hist.sorted_buckets()
    for bound, cumulative in buckets:
        assert cumulative == sum(1 for v in observed if v <= bound * (1 + 1e-5))
    [rejected] = series(parsed, "caliper_server_rejected_total", reason="overload")
    assert rejected.value == 3.0

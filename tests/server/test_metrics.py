"""Prometheus exposition of the embedded server's metrics."""

from __future__ import annotations

import re

from modelcaliper.server.metrics import Metrics, exponential_buckets


def parse_exposition(text: str) -> dict[str, float]:
    """Sample lines as {'name{labels}': value}; checks every line is well formed."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) \S+ .+", line), line
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_request_is_recorded_under_tf_serving_names():
    metrics = Metrics()
    for total in (1.0, 2.0, 400.0):
        metrics.record_request(
            model="ranker",
            api="predict",
            entrypoint="REST",
            status="OK",
            phases_ms={"total": total, "compute": total / 2, "queue": 0.1},
            batch_rows=25,
        )
    metrics.record_request(
        model="ranker",
        api="predict",
        entrypoint="GRPC",
        status="INVALID_ARGUMENT",
        phases_ms={"total": 0.2},
        batch_rows=0,
    )
    samples = parse_exposition(metrics.render())
    assert samples[':tensorflow:serving:request_count{model_name="ranker",status="OK"}'] == 3
    assert (
        samples[':tensorflow:serving:request_count{model_name="ranker",status="INVALID_ARGUMENT"}']
        == 1
    )
    rest = '{model_name="ranker",API="predict",entrypoint="REST"'
    assert samples[f":tensorflow:serving:request_latency_count{rest}}}"] == 3
    assert samples[f":tensorflow:serving:request_latency_sum{rest}}}"] == 403_000  # microseconds
    assert samples[f':tensorflow:serving:request_latency_bucket{rest},le="+Inf"}}'] == 3
    assert samples['caliper_server_phase_seconds_count{phase="queue"}'] == 3


def test_histogram_buckets_are_cumulative_and_monotonic():
    metrics = Metrics()
    for value in (0.5, 1.5, 3.0, 100.0):
        metrics.observe("x", {}, value, (1.0, 2.0, 4.0))
    text = metrics.render()
    assert 'x_bucket{le="1"} 1' in text
    assert 'x_bucket{le="2"} 2' in text
    assert 'x_bucket{le="4"} 3' in text
    assert 'x_bucket{le="+Inf"} 4' in text
    assert "x_count 4" in text


def test_label_values_are_escaped():
    metrics = Metrics()
    metrics.inc("c", {"model_name": 'a"b\\c\nd'})
    assert 'c{model_name="a\\"b\\\\c\\nd"} 1' in metrics.render()


def test_exponential_buckets():
    assert exponential_buckets(1, 2, 4) == (1, 2, 4, 8)

"""Payload analysis on a small signature, through the real codecs of every encoding."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modelcaliper.errors import UsageError
from modelcaliper.payload.analysis import (
    GRPC_COMPRESSIONS,
    PayloadSettings,
    TimingPolicy,
    analyse_payload,
    median_call_us,
    synthetic_responses,
)
from modelcaliper.signature import Signature
from modelcaliper.wire import ENCODINGS, InferRequest, get_codec
from modelcaliper.wire.compression import COMPRESSIONS
from modelcaliper.workload.synthetic import synthetic_columns

FAST = TimingPolicy(min_samples=3, min_time_s=0.0, max_time_s=0.005)

# Repetitive on purpose: few distinct values compress well.
SMALL = Signature.from_dict(
    {
        "inputs": [
            {"name": "price_usd", "dtype": "FP32", "generator": {"kind": "uniform", "decimals": 1}},
            {"name": "item_clicks_7d", "dtype": "INT64"},
            {"name": "category", "dtype": "BYTES", "generator": {"cardinality": 5}},
            {
                "name": "user_country",
                "dtype": "BYTES",
                "generator": {"cardinality": 30, "length": [2, 2], "per_query": True},
            },
            {
                "name": "user_age_days",
                "dtype": "FP32",
                "generator": {"per_query": True, "decimals": 0},
            },
        ],
    }
)

NO_CONTEXT = Signature.from_dict(
    {
        "inputs": [
            {"name": "price_usd", "dtype": "FP32"},
            {"name": "category", "dtype": "BYTES", "generator": {"cardinality": 5}},
        ],
        "outputs": [{"name": "probabilities", "dtype": "FP32", "shape": [-1, 3]}],
    }
)


def settings(**overrides) -> PayloadSettings:
    values = {"batch_sizes": (4, 20), "group_by": "query_id", "max_requests": 3, "timing": FAST}
    values.update(overrides)
    return PayloadSettings(**values)


@pytest.fixture(scope="module")
def report():
    columns = synthetic_columns(SMALL, 120, seed=0, query_size=20)
    return analyse_payload(SMALL, columns, settings())


def row(report, encoding, compression, batch_size):
    (found,) = [
        r
        for r in report.rows
        if (r.encoding, r.compression, r.batch_size) == (encoding, compression, batch_size)
    ]
    return found


def test_every_encoding_and_allowed_compression_is_measured(report):
    measured = {(r.encoding, r.compression, r.batch_size) for r in report.rows}
    for encoding in ENCODINGS:
        allowed = GRPC_COMPRESSIONS if get_codec(encoding).transport == "grpc" else COMPRESSIONS
        for compression in COMPRESSIONS:
            for batch_size in (4, 20):
                assert ((encoding, compression, batch_size) in measured) == (compression in allowed)
    # what could not be measured is said, not silently dropped
    assert {(s["encoding"], s["compression"]) for s in report.skipped} == {
        (e, "zstd") for e in ENCODINGS if get_codec(e).transport == "grpc"
    }


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_sizes_grow_with_batch_size(report, encoding):
    small, large = row(report, encoding, "none", 4), row(report, encoding, "none", 20)
    assert large.request_bytes > small.request_bytes
    assert large.response_bytes > small.response_bytes
    assert (small.mean_rows, large.mean_rows) == (4, 20)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_gzip_is_smaller_than_none_on_repetitive_data(report, encoding):
    plain, gzip = row(report, encoding, "none", 20), row(report, encoding, "gzip", 20)
    assert gzip.request_bytes < plain.request_bytes
    assert gzip.uncompressed_request_bytes == plain.request_bytes
    assert gzip.compression_ratio == pytest.approx(plain.request_bytes / gzip.request_bytes)
    assert plain.compression_ratio == 1.0


def test_wire_time_is_bytes_over_the_link(report):
    for r in report.rows:
        total_bits = (r.request_bytes + r.response_bytes) * 8
        assert r.wire_ms == pytest.approx(total_bits / 1e9 * 1000, rel=1e-3, abs=1e-4)
        assert r.wire_ms_100mbit == pytest.approx(total_bits / 100e6 * 1000, rel=1e-3, abs=1e-4)
        assert r.encode_us > 0 and r.decode_us > 0
        assert r.requests == 3


def test_link_rate_is_used():
    columns = synthetic_columns(SMALL, 40, query_size=20)
    slow = analyse_payload(
        SMALL,
        columns,
        settings(
            batch_sizes=(20,),
            encodings=("v2-grpc",),
            compressions=("none",),
            link_bits_per_s=1e6,
        ),
    )
    (r,) = slow.rows
    assert r.wire_ms == pytest.approx(
        (r.request_bytes + r.response_bytes) * 8 / 1e6 * 1000, rel=1e-3
    )


def test_shared_context_what_if_finds_per_query_inputs_and_saves(report):
    what_if = report.what_if["shared_context"]
    assert what_if["group_by"] == "query_id"
    assert what_if["columns"] == ["user_country", "user_age_days"]
    results = [r for r in what_if["results"] if r["batch_size"] == 20]
    assert {r["encoding"] for r in results} == set(ENCODINGS)
    measured = [r for r in results if "error" not in r]
    # only TF Serving's row format cannot carry a tensor with fewer rows than the others
    assert {r["encoding"] for r in results if "error" in r} <= {"tfserving-rest rows"}
    assert len(measured) >= 5
    for r in measured:
        assert r["shared_request_bytes"] < r["request_bytes"]
        assert r["saving_bytes"] == r["request_bytes"] - r["shared_request_bytes"]
        assert 0 < r["saving_pct"] < 100


def test_shared_context_what_if_is_zero_without_context_inputs():
    columns = synthetic_columns(NO_CONTEXT, 60, query_size=20)
    what_if = analyse_payload(NO_CONTEXT, columns, settings(batch_sizes=(10,))).what_if[
        "shared_context"
    ]
    assert what_if["columns"] == []
    assert "no input is constant" in what_if["note"]
    for r in what_if["results"]:
        assert r["saving_bytes"] == 0 and r["saving_pct"] == 0.0


def test_shared_context_needs_groups():
    columns = synthetic_columns(SMALL, 40, query_size=20)
    what_if = analyse_payload(SMALL, columns, settings(group_by=None, batch_sizes=(10,)))
    shared = what_if.what_if["shared_context"]
    assert shared["columns"] == [] and "--group-by" in shared["note"]


def test_short_names_what_if_covers_the_json_encodings(report):
    results = report.what_if["short_names"]["results"]
    rest = {e for e in ENCODINGS if get_codec(e).transport == "http"}
    assert {r["encoding"] for r in results} == rest
    for r in results:
        assert r["name_bytes"] > 0
        assert r["short_names_request_bytes"] < r["request_bytes"]
        assert r["saving_pct"] > 0
    rows = {r["batch_size"]: r for r in results if r["encoding"] == "tfserving-rest rows"}
    columnar = {r["batch_size"]: r for r in results if r["encoding"] == "tfserving-rest columnar"}
    # the row format repeats every name in every row; the columnar format names each tensor once
    names = sum(len(s.name) for s in SMALL.inputs)
    assert rows[20]["name_bytes"] == 20 * names
    assert columnar[20]["name_bytes"] == columnar[4]["name_bytes"] == names


def test_responses_follow_the_signature_outputs():
    requests = [InferRequest({"x": np.zeros(7, np.float32)})]
    (default,) = synthetic_responses(SMALL, requests, seed=0)
    assert list(default.outputs) == ["score"] and default.outputs["score"].shape == (7, 1)
    assert default.outputs["score"].dtype == np.float32
    (declared,) = synthetic_responses(NO_CONTEXT, requests, seed=0)
    assert declared.outputs["probabilities"].shape == (7, 3)
    # seeded: the same responses every time
    (again,) = synthetic_responses(SMALL, requests, seed=0)
    np.testing.assert_array_equal(again.outputs["score"], default.outputs["score"])


def test_nothing_measurable_is_a_usage_error():
    columns = synthetic_columns(SMALL, 40, query_size=20)
    with pytest.raises(UsageError, match="no encoding and compression pair"):
        analyse_payload(SMALL, columns, settings(encodings=("v2-grpc",), compressions=("zstd",)))


def test_median_call_stops_at_its_time_bound():
    policy = TimingPolicy(min_samples=1000, min_time_s=0.0, max_time_s=0.03)
    start = time.perf_counter()
    median_us = median_call_us([lambda: time.sleep(0.002)], policy)
    assert time.perf_counter() - start < 0.5
    assert median_us >= 2000


def test_median_call_takes_the_minimum_samples():
    calls = []
    median_call_us([lambda: calls.append(1), lambda: calls.append(2)], TimingPolicy(20, 0.0, 10.0))
    assert 22 <= len(calls) <= 24  # one warm-up each, then whole rounds until 20 samples

"""The summary document: every key and type, nulls for missing data, rendering, hlog export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.load.records import Recorder
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.summary import (
    SCHEMA,
    build_summary,
    render_summary,
    write_latency_hlog,
    write_summary,
)
from modelcaliper.load.workers import RunResult
from modelcaliper.stats.hlog import read_hlog
from tests.load.mock_transport import MockBehaviour, MockTransport
from tests.load.test_driver import drive, pool_of
from tests.load.test_fanout import SlowTailTransport, query_pool

NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
LATENCY_KEYS = ("count", "mean", "p50", "p90", "p95", "p99", "p999", "max")

# key → expected type(s) of the top-level value
TOP_LEVEL: dict[str, Any] = {
    "schema": str, "run_id": str, "target": dict, "load": dict, "requests": dict,
    "throughput": dict, "latency_ms": dict, "latency_ok_ms": dict, "phases_ms": dict,
    "queries": (dict, type(None)), "payload_bytes": dict, "errors_by_kind": dict,
    "error_examples": dict, "generator": dict, "confidence": dict, "intervals": list,
    "records": dict, "pool": (dict, type(None)), "interrupted": bool, "started_at": str,
    "versions": dict,
}


def check_latency(block: dict[str, Any]) -> None:
    assert set(block) == set(LATENCY_KEYS)
    assert isinstance(block["count"], int)
    for key in LATENCY_KEYS[1:]:
        assert isinstance(block[key], OPTIONAL_NUMBER), key


def check_schema(summary: dict[str, Any]) -> None:
    assert set(summary) == set(TOP_LEVEL)
    for key, kind in TOP_LEVEL.items():
        assert isinstance(summary[key], kind), key
    assert summary["schema"] == SCHEMA
    assert set(summary["target"]) == {"url", "protocol", "model"}
    assert {"arrival", "offered_rps", "duration_s", "batch_size",
            "candidates"} <= set(summary["load"])
    requests = summary["requests"]
    assert set(requests) == {"scheduled", "sent", "ok", "errors", "timeouts", "dropped",
                             "cancelled", "model_errors", "warmup"}
    assert all(isinstance(v, int) for v in requests.values())
    assert {"achieved_rps", "rows_per_s"} <= set(summary["throughput"])
    check_latency(summary["latency_ms"])
    for name in ("schedule_lag", "client_queue", "send", "wait", "receive", "network"):
        assert set(summary["phases_ms"][name]) == {"count", "mean", "p50", "p99", "share"}
    assert set(summary["payload_bytes"]) == {"request_mean", "response_mean"}
    generator = summary["generator"]
    assert set(generator["schedule_lag_ms"]) == {"p50", "p99", "max"}
    assert isinstance(generator["cpu_percent"], NUMBER)
    assert isinstance(generator["saturated"], bool)
    assert isinstance(generator["workers"], list)
    assert "p99_ms" in summary["confidence"]
    assert summary["started_at"].endswith("Z")
    # JSON all the way down (no numpy scalars, no infinities)
    assert orjson.loads(orjson.dumps(summary)) == summary


def test_summary_of_a_plain_run(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=200, duration_s=1.0, warmup_s=0.2, batch_size=4)
    result, _ = drive(spec, MockTransport(MockBehaviour(error_rate=0.05, seed=2)),
                      pool=pool_of(rows=4))
    summary = build_summary(result, spec, spec.plan(), run_id="abc",
                            target={"url": "mock://", "protocol": "v2-rest", "model": "m"})
    check_schema(summary)
    requests = summary["requests"]
    assert requests["scheduled"] == 200 and requests["warmup"] == 40
    assert requests["ok"] + requests["errors"] == 200
    assert summary["errors_by_kind"] == {"http_503": requests["errors"]}
    assert summary["queries"] is None
    assert summary["throughput"]["achieved_rps"] == pytest.approx(200, rel=0.05)
    window_s = summary["throughput"]["window_s"]
    assert window_s == pytest.approx(1.0)
    assert summary["throughput"]["rows_per_s"] == pytest.approx(4 * requests["ok"] / window_s,
                                                                rel=0.05)
    latency = summary["latency_ms"]
    assert 2.0 <= latency["p50"] <= latency["p99"] <= latency["max"]
    ci = summary["confidence"]["p99_ms"]
    assert ci["low"] <= ci["estimate"] and ci["level"] == 0.95 and ci["n"] == 200
    assert ci["high"] is None  # 200 samples cannot bound a p99 from above at 95 %
    # the mock reports server phases: they appear, with shares of the mean latency
    assert summary["phases_ms"]["compute"]["share"] == pytest.approx(
        summary["phases_ms"]["compute"]["mean"] / latency["mean"])
    assert "recv" not in summary["phases_ms"]  # never reported
    assert summary["payload_bytes"]["response_mean"] == 64
    text = render_summary(summary)
    assert "http_503 ×" in text and 'e.g. "mock target refused' in text
    write_summary(summary, tmp_path / "out" / "run.json")
    assert orjson.loads((tmp_path / "out" / "run.json").read_bytes()) == summary


def test_summary_of_fanned_out_queries() -> None:
    spec = LoadSpec(rate_per_s=10, max_requests=3, candidates=10, batch_size=4,
                    deadline_s=0.1, on_deadline="cancel")
    result, _ = drive(spec, SlowTailTransport(tail_s=0.3), pool=query_pool(spec))
    summary = build_summary(result, spec, spec.plan())
    check_schema(summary)
    queries = summary["queries"]
    assert queries["count"] == 3 and queries["deadline_misses"] == 3
    assert queries["deadline_ms"] == pytest.approx(100)
    check_latency(queries["latency_ms"])
    assert summary["requests"]["cancelled"] == 3
    assert summary["load"]["offered_qps"] == pytest.approx(10)
    assert summary["load"]["offered_rps"] == pytest.approx(30)
    text = render_summary(summary)
    assert "deadline 100 ms missed by 3 (100.0%)" in text


def test_missing_statistics_are_null_not_zero() -> None:
    spec = LoadSpec(rate_per_s=10, duration_s=1)
    empty = RunResult.merge([_empty_result()])
    summary = build_summary(empty, spec, spec.plan())
    check_schema(summary)
    assert summary["latency_ms"]["p99"] is None
    assert summary["payload_bytes"] == {"request_mean": None, "response_mean": None}
    assert summary["confidence"]["p99_ms"] is None
    assert summary["phases_ms"]["send"]["mean"] is None


def _empty_result() -> Any:
    from modelcaliper.load.driver import DriveResult

    return DriveResult(Recorder().close(), 0, False, 1_700_000_000.0, 1.0, 0.1, 0)


def test_render_names_errors_and_saturation() -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=1.5)
    mock = MockTransport(MockBehaviour(client_stall_at_s=0.5, client_stall_s=0.3))
    result, _ = drive(spec, mock)
    summary = build_summary(result, spec, spec.plan())
    assert summary["generator"]["saturated"] is True
    text = render_summary(summary)
    assert "generator saturated above" in text and "add --workers" in text
    assert "schedule_lag" in text and "latency ms" in text


def test_hlog_export_reads_back(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=2.5)
    result, _ = drive(spec)
    lines = write_latency_hlog(result.stats, result.started_at_s, tmp_path / "run.hlog")
    log = read_hlog(tmp_path / "run.hlog")
    assert len(log.intervals) == lines >= 2
    assert sum(i.histogram.count for i in log.intervals) == 250
    assert log.start_time_s == pytest.approx(result.started_at_s, abs=1e-3)
    assert [i.start_s for i in log.intervals] == sorted(i.start_s for i in log.intervals)

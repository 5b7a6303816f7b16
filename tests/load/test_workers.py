"""Worker processes: one global schedule split, statistics merged exactly, failures reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelcaliper.errors import TargetError
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.summary import build_summary
from modelcaliper.load.transport import Status
from modelcaliper.load.workers import RunResult, run_load
from tests.load.mock_transport import MockBehaviour
from tests.load.test_driver import pool_of
from tests.load.test_fanout import query_pool

# Deterministic per request: service time, failure and reported server phases depend on the
# request id only, so any split of the schedule sees the same answers.
BEHAVIOUR = MockBehaviour(service_s=0.003, jitter_s=0.002, error_rate=0.1, seed=5,
                          drawn_timing=True)


def run(spec: LoadSpec, records: Path | None = None) -> RunResult:
    pool = query_pool(spec, 5) if spec.fanout else pool_of(units=7)
    return run_load(spec, spec.plan(), pool, BEHAVIOUR.create, records_dir=records,
                    handle_sigint=False)


def assert_same_measurements(one: RunResult, many: RunResult) -> None:
    a, b = one.stats, many.stats
    assert np.array_equal(a.status_counts, b.status_counts)
    assert a.errors_by_kind == b.errors_by_kind
    for name in ("sent", "request_bytes_sum", "response_bytes_sum", "rows_ok", "queries",
                 "queries_ok", "warmup_requests"):
        assert getattr(a, name) == getattr(b, name), name
    # the server phases are a function of the request alone: merged, they match exactly
    for name in ("compute", "total"):
        assert a.histograms[name] == b.histograms[name], name
    for name in ("latency", "schedule_lag", "client_queue"):
        assert a.histograms[name].count == b.histograms[name].count, name


@pytest.mark.slow
def test_two_workers_measure_what_one_does(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=300, duration_s=1.0, warmup_s=0.1, seed=4)
    one = run(spec, tmp_path / "one")
    two = run(LoadSpec(rate_per_s=300, duration_s=1.0, warmup_s=0.1, seed=4, workers=2),
              tmp_path / "two")
    assert one.stats.scheduled == two.stats.scheduled == 300
    assert_same_measurements(one, two)
    assert [w.worker for w in two.workers] == [0, 1]
    # disjoint shares of one schedule: worker i sent units i, i + 2, ...
    parts = [pq.read_table(tmp_path / "two" / f"requests-w{i}.parquet").to_pydict()
             for i in range(2)]
    for i, part in enumerate(parts):
        assert sorted(part["index"]) == list(range(i, 330, 2))
        assert set(part["worker"]) == {i}
    single = pq.read_table(tmp_path / "one" / "requests-w0.parquet").to_pydict()
    both = sorted(zip(parts[0]["index"] + parts[1]["index"],
                      parts[0]["intended_ns"] + parts[1]["intended_ns"], strict=True))
    # the same intended offsets, to the nanosecond, whichever process sent them
    assert both == sorted(zip(single["index"], single["intended_ns"], strict=True))
    summary = build_summary(two, spec, spec.plan())
    assert len(summary["generator"]["workers"]) == 2
    assert summary["requests"]["scheduled"] == 300
    assert two.cpu_s == pytest.approx(sum(w.cpu_s for w in two.workers))


@pytest.mark.slow
def test_workers_merge_fanned_out_queries() -> None:
    spec = LoadSpec(rate_per_s=30, max_requests=12, candidates=10, batch_size=4, seed=1,
                    deadline_s=1.0)
    one = run(spec)
    three = run(LoadSpec(rate_per_s=30, max_requests=12, candidates=10, batch_size=4, seed=1,
                         deadline_s=1.0, workers=3))
    assert one.stats.queries == three.stats.queries == 12
    assert three.stats.scheduled == 36
    assert_same_measurements(one, three)
    assert three.stats.count(Status.OK) + three.stats.count(Status.ERROR) == 36


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_target_fails_the_run() -> None:
    spec = LoadSpec(rate_per_s=10, duration_s=1.0, workers=2)
    with pytest.raises(TargetError, match="connection refused"):
        run_load(spec, spec.plan(), pool_of(), MockBehaviour(unreachable=True).create,
                 handle_sigint=False)

"""Query fan-out: request counts, query latency, deadlines (cancel vs wait), per-query limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelcaliper.load.fanout import run_query
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from tests.load.mock_transport import MockBehaviour, MockTransport
from tests.load.test_driver import drive


def query_pool(spec: LoadSpec, queries: int = 3) -> RequestPool:
    """Queries whose requests carry the rows the spec's fan-out gives them."""
    units = tuple(tuple(PreparedRequest("/m", b"q" * 8, rows=rows, pool_index=q * 10 + j)
                        for j, rows in enumerate(spec.rows_per_request))
                  for q in range(queries))
    return RequestPool(units, "v2-rest json", "none", "http", 0.0, 8 * len(units[0]) * queries)


class SlowTailTransport(MockTransport):
    """Answers in 5 ms, except the short last request of a query, which takes ``tail_s``."""

    def __init__(self, tail_s: float) -> None:
        super().__init__(MockBehaviour())
        self.tail_s = tail_s

    async def send(self, request: PreparedRequest, *, request_id: str, traceparent: str,
                   timeout_s: float, keep_body: bool = False) -> Outcome:
        sent_ns = time.perf_counter_ns()
        self.sent += 1
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        try:
            await asyncio.sleep(self.tail_s if request.rows < 4 else 0.005)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        done_ns = time.perf_counter_ns()
        return Outcome(Status.OK, sent_ns, sent_ns, done_ns, done_ns, 8, len(request.body), "200")


def read(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}


def test_a_query_fans_out_into_batches_with_a_smaller_last_one(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=20, duration_s=0.5, candidates=10, batch_size=4)
    result, mock = drive(spec, records=tmp_path, pool=query_pool(spec))
    stats = result.stats
    assert stats.queries == 10
    assert mock.sent == stats.scheduled == 30
    assert stats.rows_ok == 100  # 10 queries × 10 candidates
    requests = read(tmp_path / "requests.parquet")
    # request j of query q is index q * 3 + j; all of a query share its intended time
    assert sorted(requests["index"].tolist()) == list(range(30))
    assert np.array_equal(requests["query"], requests["index"] // 3)
    for q in range(10):
        mine = requests["query"] == q
        assert len(set(requests["intended_ns"][mine].tolist())) == 1
        assert sorted(requests["rows"][mine].tolist()) == [2, 4, 4]
    queries = read(tmp_path / "queries.parquet")
    assert sorted(queries["index"].tolist()) == list(range(10))
    assert np.all(queries["requests"] == 3) and np.all(queries["ok"] == 3)
    # query latency = completion of its last request − intended time
    for q in range(10):
        mine = requests["query"] == q
        row = queries["index"] == q
        assert queries["done_ns"][row][0] == requests["done_ns"][mine].max()
        assert queries["intended_ns"][row][0] == requests["intended_ns"][mine][0]
    assert stats.histograms["query_latency"].count == 10


DEADLINES = [
    # wait: the slow request finishes, the query misses its deadline late
    ("wait", 9, 0, 0.30, None),
    # cancel: the slow request is abandoned at the deadline, the query ends there
    ("cancel", 6, 3, 0.10, 0.25),
]


@pytest.mark.parametrize(("on_deadline", "ok", "cancelled", "min_latency_s", "max_latency_s"),
                         DEADLINES)
def test_deadline_cancel_or_wait(tmp_path: Path, on_deadline: str, ok: int, cancelled: int,
                                 min_latency_s: float, max_latency_s: float | None) -> None:
    spec = LoadSpec(rate_per_s=10, max_requests=3, candidates=10, batch_size=4,
                    deadline_s=0.1, on_deadline=on_deadline)
    mock = SlowTailTransport(tail_s=0.3)
    result, _ = drive(spec, mock, records=tmp_path, pool=query_pool(spec))
    stats = result.stats
    assert stats.queries == 3 and stats.deadline_misses == 3
    assert stats.count(Status.OK) == ok
    assert stats.count(Status.CANCELLED) == cancelled == mock.cancelled
    latency = stats.histograms["query_latency"]
    assert latency.min / 1e6 >= min_latency_s * 0.95
    if max_latency_s is not None:
        assert latency.max / 1e6 <= max_latency_s
        assert stats.errors_by_kind == {"deadline": 3}
    queries = read(tmp_path / "queries.parquet")
    assert queries["missed"].all()
    assert (queries["ok"] == (3 if on_deadline == "wait" else 2)).all()


def test_fast_queries_meet_their_deadline() -> None:
    spec = LoadSpec(rate_per_s=20, max_requests=5, candidates=8, batch_size=4, deadline_s=0.2)
    result, _ = drive(spec, SlowTailTransport(tail_s=0.0), pool=query_pool(spec))
    assert result.stats.queries == 5 and result.stats.deadline_misses == 0
    assert result.stats.queries_ok == 5


def test_per_query_concurrency_serialises_a_query() -> None:
    spec = LoadSpec(rate_per_s=2, max_requests=1, candidates=16, batch_size=4,
                    per_query_concurrency=1)
    mock = SlowTailTransport(tail_s=0.005)
    result, _ = drive(spec, mock, pool=query_pool(spec))
    assert mock.max_in_flight_seen == 1
    assert result.stats.scheduled == 4
    # one after the other: the query takes about four service times, the later requests
    # waited in the client (their client_queue phase)
    assert result.stats.histograms["query_latency"].min / 1e3 >= 18
    assert result.stats.histograms["client_queue"].max / 1e3 >= 10


def test_run_query_alone_reports_its_last_completion() -> None:
    async def main() -> tuple[int, int, object]:
        finished: list[int] = []

        async def send(j: int, prepared: PreparedRequest, gate: object) -> Outcome:
            await asyncio.sleep(0.01 * (j + 1))
            now = time.perf_counter_ns()
            finished.append(now)
            return Outcome(Status.OK if j else Status.ERROR, now, now, now, now)

        intended = time.perf_counter_ns()
        unit = [PreparedRequest("/m", b"")] * 3
        result = await run_query(send, unit, intended, deadline_s=1.0)
        return intended, max(finished), result

    intended, last, result = asyncio.run(main())
    assert result.done_ns == last
    assert result.requests == 3 and result.ok == 2
    assert not result.missed  # a failed request is not a deadline miss
    assert result.latency_ns(intended) == last - intended

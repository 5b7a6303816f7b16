"""The open-loop driver against the in-memory null target: timing, bounds, limits, failures."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelcaliper.load.driver import Driver, request_ids
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.records import Recorder
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from modelcaliper.load.workers import RunResult
from modelcaliper.stats.histogram import Histogram
from tests.load.mock_transport import MockBehaviour, MockTransport

ROOT = Path(__file__).resolve().parents[2]


def pool_of(units: int = 4, per_unit: int = 1, rows: int = 1) -> RequestPool:
    """A pool of tiny prepared requests (the mock never reads them)."""
    built = tuple(tuple(PreparedRequest("/m", b"x" * (10 + u), rows=rows, pool_index=u)
                        for _ in range(per_unit)) for u in range(units))
    return RequestPool(built, "v2-rest json", "none", "http", 0.0,
                       sum(len(r.body) for unit in built for r in unit))


def drive(spec: LoadSpec, transport: MockTransport | None = None, *, records: Path | None = None,
          stop_after_s: float | None = None, pool: RequestPool | None = None
          ) -> tuple[RunResult, MockTransport]:
    """Run the whole plan of ``spec`` in-process against ``transport``."""
    mock = transport or MockTransport()

    async def main() -> RunResult:
        await mock.start()
        recorder = Recorder(path=records / "requests.parquet" if records else None,
                            query_path=records / "queries.parquet" if records else None)
        driver = Driver(spec, mock, pool or pool_of(per_unit=spec.requests_per_unit),
                        recorder=recorder)
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, driver.stop)
        result = await driver.run(spec.plan().offsets_s)
        await mock.close()
        return RunResult.merge([result])

    return asyncio.run(main()), mock


def read(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False)
            for name in table.column_names}


def p(hist: Histogram, q: float) -> float:
    """Percentile in ms."""
    return hist.percentile(q) / 1e3


# --- intended times ------------------------------------------------------------------------


def test_requests_go_out_at_their_intended_times(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=200, duration_s=1.0)
    result, mock = drive(spec, records=tmp_path)
    rows = read(tmp_path / "requests.parquet")
    intended = np.sort(rows["intended_ns"])
    # every unit of the plan, at its planned offset
    assert np.array_equal(intended, np.rint(spec.plan().offsets_s * 1e9).astype(np.int64))
    # never early, and on time within a few milliseconds even on a busy machine
    lag_ns = rows["dispatched_ns"] - rows["intended_ns"]
    assert lag_ns.min() >= 0
    assert np.median(lag_ns) < 2e6
    assert np.all(rows["sent_ns"] >= rows["dispatched_ns"])
    # the lag histogram holds the same lags
    assert result.stats.histograms["schedule_lag"].count == 200
    assert mock.sent == 200


def test_the_schedule_is_walked_in_chunks_without_losing_a_unit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelcaliper.load.driver._SCHEDULE_CHUNK", 7)
    spec = LoadSpec(arrival="poisson", rate_per_s=300, max_requests=50, seed=3)
    drive(spec, records=tmp_path)
    rows = read(tmp_path / "requests.parquet")
    order = np.argsort(rows["index"])
    assert rows["index"][order].tolist() == list(range(50))
    assert np.array_equal(rows["intended_ns"][order],
                          np.rint(spec.plan().offsets_s * 1e9).astype(np.int64))


def test_latency_counts_from_the_intended_time_through_a_server_stall() -> None:
    # The server freezes for 400 ms; requests keep being sent on schedule and each one
    # intended during the stall waits for its end: its latency shows that wait.
    spec = LoadSpec(rate_per_s=100, duration_s=2.0)
    stall = MockBehaviour(service_s=0.002, stall_at_s=0.7, stall_s=0.4)
    result, _ = drive(spec, MockTransport(stall))
    latency = result.stats.histograms["latency"]
    assert latency.count == 200
    assert p(latency, 99) >= 300
    assert p(latency, 90) >= 100  # a fifth of the run was intended during the stall

    # A closed-loop client (send, await, send the next) against the same target records
    # one slow request for the whole stall: its tail looks healthy.
    async def closed_loop() -> Histogram:
        mock = MockTransport(stall)
        await mock.start()
        hist, end = Histogram(), time.perf_counter() + 2.0
        index = 0
        while time.perf_counter() < end:
            outcome = await mock.send(PreparedRequest("/m", b"x"), request_id=str(index),
                                      traceparent="", timeout_s=5.0)
            hist.record((outcome.done_ns - outcome.sent_ns) / 1e3)
            index += 1
            await asyncio.sleep(0.01)
        return hist

    closed = asyncio.run(closed_loop())
    assert p(closed, 99) < 100  # the stall hides behind one sample
    assert closed.max / 1e3 >= 300  # it was there all the same


def test_a_generator_hiccup_is_lag_and_latency_not_hidden() -> None:
    # The event loop is blocked for 300 ms (like a GC pause in the generator): requests due
    # then are sent late, and their latency includes the lateness.
    spec = LoadSpec(rate_per_s=100, duration_s=1.5)
    mock = MockTransport(MockBehaviour(client_stall_at_s=0.5, client_stall_s=0.3))
    result, _ = drive(spec, mock)
    lag = result.stats.histograms["schedule_lag"]
    assert lag.max / 1e3 >= 250
    assert p(result.stats.histograms["latency"], 99) >= 250
    # ... and the generator owns up to it (the target itself was healthy)
    from modelcaliper.load.health import assess_generator

    health = assess_generator(result.stats, 1.5, 0.0, result.cpu_s, result.wall_s)
    assert health.saturated and health.target_healthy
    assert "generator saturated above" in (health.message or "")
    assert "add --workers" in (health.message or "")


def test_a_generator_hiccup_is_owned_up_to_even_when_the_target_fails_too() -> None:
    # A failing target does not excuse late dispatches: they are the generator's own. The
    # message says both.
    from modelcaliper.load.health import assess_generator

    spec = LoadSpec(rate_per_s=100, duration_s=1.5)
    mock = MockTransport(MockBehaviour(error_rate=0.3, client_stall_at_s=0.5,
                                       client_stall_s=0.3))
    result, _ = drive(spec, mock)
    health = assess_generator(result.stats, 1.5, 0.0, result.cpu_s, result.wall_s)
    assert not health.target_healthy
    assert health.saturated
    assert "generator saturated above" in (health.message or "")
    assert "also failed or timed out" in (health.message or "")


def test_a_failing_target_alone_does_not_make_the_generator_saturated() -> None:
    from modelcaliper.load.health import assess_generator

    spec = LoadSpec(rate_per_s=100, duration_s=1.0)
    result, _ = drive(spec, MockTransport(MockBehaviour(error_rate=0.5)))
    health = assess_generator(result.stats, 1.0, 0.0, result.cpu_s, result.wall_s)
    assert not health.target_healthy
    assert health.schedule_lag_ms["p99"] <= 1.0
    assert not health.saturated and health.message is None


# --- warm-up and bounds -----------------------------------------------------------------


def test_warmup_is_sent_but_not_measured(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=0.5, warmup_s=0.2)
    result, mock = drive(spec, records=tmp_path)
    assert mock.sent == 70
    assert result.stats.scheduled == 50
    assert result.stats.warmup_requests == 20
    assert result.stats.histograms["latency"].count == 50
    rows = read(tmp_path / "requests.parquet")
    assert len(rows["index"]) == 70
    assert rows["warmup"].sum() == 20
    assert np.all(rows["intended_ns"][rows["warmup"]] < 0.2e9)


BOUNDS = [
    # a count reached first
    ({"rate_per_s": 200, "duration_s": 10, "max_requests": 37}, 37, 1.0),
    # a duration reached first
    ({"rate_per_s": 100, "duration_s": 0.3, "max_requests": 1000}, 30, 1.5),
    # a count alone
    ({"rate_per_s": 500, "max_requests": 50}, 50, 1.0),
]


@pytest.mark.parametrize(("kwargs", "expected", "max_wall_s"), BOUNDS)
def test_stops_on_count_or_time(kwargs: dict, expected: int, max_wall_s: float) -> None:
    started = time.perf_counter()
    result, mock = drive(LoadSpec(**kwargs))
    assert result.stats.scheduled == expected == mock.sent
    assert time.perf_counter() - started < max_wall_s + 1.0


# --- the client queue ------------------------------------------------------------------------


def test_max_in_flight_queues_in_the_client() -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=0.5, max_in_flight=5)
    result, mock = drive(spec, MockTransport(MockBehaviour(service_s=0.2)))
    stats = result.stats
    assert mock.max_in_flight_seen <= 5
    assert stats.count(Status.OK) == 50 and stats.count(Status.DROPPED) == 0
    # the wait for a slot is part of the latency and shows as the client_queue phase
    assert p(stats.histograms["client_queue"], 99) > 100
    assert p(stats.histograms["latency"], 99) >= p(stats.histograms["client_queue"], 99)


def test_max_in_flight_drops_and_counts() -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=0.5, max_in_flight=5, on_overload="drop")
    result, mock = drive(spec, MockTransport(MockBehaviour(service_s=0.2)))
    stats = result.stats
    dropped, ok = stats.count(Status.DROPPED), stats.count(Status.OK)
    assert mock.max_in_flight_seen <= 5
    assert dropped > 20 and ok + dropped == 50 and mock.sent == ok
    assert stats.sent == ok
    assert stats.errors_by_kind["dropped"] == dropped
    # dropped requests have no latency
    assert stats.histograms["latency"].count == ok


# --- failures are data -----------------------------------------------------------------------


def test_timeouts_are_recorded_with_their_latency() -> None:
    spec = LoadSpec(rate_per_s=50, duration_s=0.2, timeout_s=0.1)
    result, _ = drive(spec, MockTransport(MockBehaviour(service_s=0.5)))
    stats = result.stats
    assert stats.count(Status.TIMEOUT) == 10
    assert stats.errors_by_kind == {"timeout": 10}
    assert p(stats.histograms["latency"], 50) >= 100
    assert stats.histograms["latency_ok"].count == 0


class HangingTransport(MockTransport):
    """A transport that ignores its timeout: the driver's own guard must end the request."""

    async def send(self, request: PreparedRequest, **kwargs: object) -> Outcome:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_the_driver_guards_against_a_transport_that_never_answers() -> None:
    spec = LoadSpec(rate_per_s=10, max_requests=2, timeout_s=0.05)
    started = time.perf_counter()
    result, _ = drive(spec, HangingTransport())
    assert result.stats.count(Status.TIMEOUT) == 2
    assert "did not time out by itself" in result.stats.error_examples["timeout"][0]
    assert time.perf_counter() - started < 5.0


def test_errors_are_counted_by_kind_with_examples() -> None:
    spec = LoadSpec(rate_per_s=200, duration_s=0.5)
    result, _ = drive(spec, MockTransport(MockBehaviour(error_rate=0.3, seed=3)))
    stats = result.stats
    errors = stats.count(Status.ERROR)
    assert 10 < errors < 60
    assert stats.errors_by_kind == {"http_503": errors}
    assert len(stats.error_examples["http_503"]) == 3
    # errors are answers: they have a latency, and errors exclude timeouts
    assert stats.histograms["latency"].count == 100
    assert stats.count(Status.TIMEOUT) == 0


# --- identifiers -------------------------------------------------------------------------


def test_request_ids_are_unique_w3c_and_reproducible() -> None:
    spec = LoadSpec(rate_per_s=500, max_requests=200, seed=11)
    _, first = drive(spec)
    _, again = drive(spec)
    assert len(set(first.request_ids)) == 200
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", t) for t in first.traceparents)
    assert sorted(first.traceparents) == sorted(again.traceparents)
    other = request_ids(12, 0)
    assert other != request_ids(11, 0)
    # the request id is the trace id, so logs and traces join on it
    rid, parent = request_ids(11, 5)
    assert parent.split("-")[1] == rid


# --- interruption ------------------------------------------------------------------------


def test_stop_flushes_records_and_marks_interrupted(tmp_path: Path) -> None:
    spec = LoadSpec(rate_per_s=100, duration_s=10)
    started = time.perf_counter()
    result, mock = drive(spec, MockTransport(MockBehaviour(service_s=0.05)), records=tmp_path,
                         stop_after_s=0.5)
    assert result.interrupted
    assert time.perf_counter() - started < 4.0
    rows = read(tmp_path / "requests.parquet")
    # every request that was due ended as a record, on disk and in the statistics
    assert len(rows["index"]) == result.stats.scheduled == mock.sent
    assert 30 <= mock.sent <= 80
    assert result.stats.count(Status.OK) + result.stats.count(Status.CANCELLED) == mock.sent


SIGINT_SCRIPT = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from modelcaliper.load.spec import LoadSpec
    from modelcaliper.load.workers import run_load
    from modelcaliper.load.summary import build_summary
    from tests.load.mock_transport import MockBehaviour
    from tests.load.test_driver import pool_of

    spec = LoadSpec(rate_per_s=100, duration_s=30)
    plan = spec.plan()
    factory = MockBehaviour(service_s=0.02).create
    import threading
    # a real SIGINT, delivered while the run is in full flight
    threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT)).start()
    result = run_load(spec, plan, pool_of(), factory, records_dir=sys.argv[1])
    summary = build_summary(result, spec, plan)
    print(json.dumps({"interrupted": summary["interrupted"],
                      "scheduled": summary["requests"]["scheduled"]}))
""")


def test_ctrl_c_stops_the_run_and_keeps_what_finished(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SIGINT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "rec")], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - started < 20
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["interrupted"] is True
    assert 20 <= answer["scheduled"] < 3000
    rows = read(tmp_path / "rec" / "requests-w0.parquet")
    assert len(rows["index"]) == answer["scheduled"]

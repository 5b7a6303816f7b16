"""The ground-truth server: its laws, its stall model, and the server itself on 127.0.0.1.

The laws and the stall arithmetic are checked as pure functions (tables and properties); the
server is checked in-process (a thread) and as a child process: seeded draws in arrival order,
records that match what clients saw, stalls that hold answers exactly as modelled, HTTP/1.1
keep-alive and pipelining, the ``/stats`` endpoint and the record bound.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import UsageError
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.testing import (
    GroundTruthProcess,
    GroundTruthRecords,
    GroundTruthServer,
    ServiceTime,
    Stalls,
)

MS = 1_000_000  # nanoseconds per millisecond


# ---------------------------------------------------------------- service-time laws


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("constant:5ms", ServiceTime("constant", 0.005)),  # a fixed hold
        ("constant:0", ServiceTime("constant", 0.0)),  # no hold: measures the loopback alone
        ("exponential:mean=2ms", ServiceTime("exponential", 0.002)),  # memoryless
        ("lognormal:median=5ms,sigma=0.5", ServiceTime("lognormal", 0.005, 0.5)),  # skewed
        ("lognormal:sigma=1,median=1s", ServiceTime("lognormal", 1.0, 1.0)),  # any order
    ],
)
def test_service_laws_parse(text, expected):
    assert ServiceTime.parse(text) == expected
    assert ServiceTime.parse(expected.describe()) == expected  # describe reads back


@pytest.mark.parametrize(
    "text",
    [
        "uniform:5ms",  # unknown law
        "constant:fast",  # not a duration
        "exponential:5ms",  # the mean must be named
        "lognormal:median=5ms",  # sigma missing
        "lognormal:median=5ms,sigma=-1",  # negative shape
        "lognormal:median=5ms,sigma=x",  # not a number
        "constant:-5ms",  # negative duration
    ],
)
def test_bad_service_laws_are_usage_errors(text):
    with pytest.raises(UsageError, match="--service"):
        ServiceTime.parse(text)


@pytest.mark.parametrize(
    "law",
    [
        ServiceTime("exponential", 0.005),
        ServiceTime("lognormal", 0.005, 0.5),
        ServiceTime("lognormal", 0.002, 1.2),
    ],
)
def test_draws_follow_the_exact_quantiles(law):
    rng = np.random.default_rng(11)
    draws = np.array([law.draw_s(rng) for _ in range(200_000)])
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(draws, q) == pytest.approx(law.quantile_s(q), rel=0.03)


def test_constant_law_draws_nothing_from_the_rng():
    rng = np.random.default_rng(5)
    assert ServiceTime("constant", 0.003).draw_s(rng) == 0.003
    assert rng.random() == np.random.default_rng(5).random()


# ---------------------------------------------------------------- the stall model

STALLS = Stalls(stall_s=0.3, every_s=3.0)  # frozen during [2.7 s, 3 s), [5.7 s, 6 s), ...


@pytest.mark.parametrize(
    ("arrival_ms", "service_ms", "release_ms"),
    [
        (0, 5, 5),  # calm: answered after its service time
        (2694, 5, 2699),  # finishes just before the stall: unaffected
        (2695, 5, 3000),  # would finish as the stall begins: held until it ends
        (2700, 5, 3005),  # arrives as the stall begins: read at its end, then served
        (2850, 5, 3005),  # arrives mid-stall: the same
        (2999, 5, 3005),  # arrives just before the end: the same
        (3000, 5, 3005),  # arrives as the server resumes: served at once
        (2600, 500, 3100),  # in service across the whole stall: timers keep running
        (5690, 20, 6000),  # the second stall behaves like the first
        (-10, 5, -5),  # before the epoch: no stall applies
    ],
)
def test_release_times(arrival_ms, service_ms, release_ms):
    assert STALLS.release_ns(arrival_ms * MS, service_ms * MS) == release_ms * MS


@pytest.mark.parametrize(
    ("stall_s", "every_s"),
    [
        (3.0, 3.0),  # frozen all the time
        (4.0, 3.0),  # longer than its period
        (-0.1, 3.0),  # negative
    ],
)
def test_impossible_stalls_are_usage_errors(stall_s, every_s):
    with pytest.raises(UsageError, match="stall"):
        Stalls(stall_s, every_s)


@given(
    arrival_ns=st.integers(0, 20 * 10**9),
    service_ns=st.integers(0, 2 * 10**9),
    stall_ms=st.integers(1, 900),
    every_ms=st.integers(1000, 4000),
)
def test_release_is_the_earliest_answer_a_frozen_server_could_give(
        arrival_ns, service_ns, stall_ms, every_ms):
    stalls = Stalls(stall_ms / 1e3, every_ms / 1e3)
    every_ns, stall_ns = every_ms * MS, stall_ms * MS

    def frozen(t_ns):
        return t_ns % every_ns >= every_ns - stall_ns

    start_ns = stalls.resume_ns(arrival_ns)
    released = stalls.release_ns(arrival_ns, service_ns)
    assert not frozen(start_ns) and not frozen(released)  # nothing happens while frozen
    assert released >= arrival_ns + service_ns  # never faster than the service time
    assert start_ns - arrival_ns <= stall_ns and released - start_ns - service_ns <= stall_ns
    if not frozen(arrival_ns) and not frozen(arrival_ns + service_ns):
        assert released == arrival_ns + service_ns  # stalls that miss the request cost nothing


def test_a_whole_number_of_periods_holds_that_many_stalls():
    # Arrivals every 1 ms over 3 periods, from any phase: a tenth land in a stall.
    for phase_ms in (0, 123, 2999):
        arrivals = (phase_ms + np.arange(9000)) * MS
        waits = [STALLS.resume_ns(int(a)) - int(a) for a in arrivals]
        assert np.count_nonzero(waits) == 900


# ---------------------------------------------------------------- the server, in-process


def post(conn: http.client.HTTPConnection, request_id: str = "") -> tuple[int, dict, bytes]:
    """POST once on ``conn``; the status, the Server-Timing phases and the body."""
    conn.request("POST", "/v1/models/m:predict", body=b'{"instances":[1]}',
                 headers={"x-request-id": request_id} if request_id else {})
    answer = conn.getresponse()
    body = answer.read()
    return answer.status, parse_server_timing(answer.getheader("Server-Timing")), body


@pytest.fixture
def lognormal_server():
    with GroundTruthServer("lognormal:median=2ms,sigma=0.5", seed=7) as server:
        yield server


def test_binds_loopback_only(lognormal_server):
    with socket.create_connection(("127.0.0.1", lognormal_server.port)) as sock:
        assert sock.getpeername()[0] == "127.0.0.1"
    assert lognormal_server.url == f"http://127.0.0.1:{lognormal_server.port}"


def test_answers_with_the_seeded_draws_in_arrival_order(lognormal_server):
    conn = http.client.HTTPConnection("127.0.0.1", lognormal_server.port, timeout=10)
    answers = [post(conn, f"req-{i}") for i in range(20)]  # one keep-alive connection
    records = lognormal_server.records()
    rng = np.random.default_rng(7)
    expected_ns = [round(ServiceTime.parse("lognormal:median=2ms,sigma=0.5").draw_s(rng) * 1e9)
                   for _ in range(20)]
    assert records.service_ns.tolist() == expected_ns
    assert records.request_ids == [f"req-{i}" for i in range(20)]
    assert np.all(np.diff(records.arrival_ns) > 0)
    for i, (status, phases, body) in enumerate(answers):
        assert status == 200 and json.loads(body) == {"index": i}
        assert phases["service"] == pytest.approx(expected_ns[i] / 1e6, abs=1e-3)
        assert phases["stall"] == 0.0
        # The reported total is the hold as the server measured it, never below the draw.
        assert expected_ns[i] / 1e6 <= phases["total"] <= expected_ns[i] / 1e6 + 20
    held = records.done_ns - records.arrival_ns
    assert np.all(held >= records.service_ns) and np.all(records.release_ns >= records.arrival_ns)


def test_reset_reseeds_and_clears(lognormal_server):
    conn = http.client.HTTPConnection("127.0.0.1", lognormal_server.port, timeout=10)
    for _ in range(3):
        post(conn)
    first = lognormal_server.records().service_ns
    epoch_ns = lognormal_server.reset()
    assert len(lognormal_server.records().arrival_ns) == 0
    for _ in range(3):
        post(conn)
    again = lognormal_server.records()
    assert again.epoch_ns == epoch_ns and again.service_ns.tolist() == first.tolist()


def test_a_reset_during_a_held_request_leaves_the_new_records_alone():
    with GroundTruthServer("constant:200ms") as server:
        answers: dict[str, int] = {}

        def one(name: str) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            answers[name] = post(conn, name)[0]

        before = threading.Thread(target=one, args=("before",))
        before.start()
        time.sleep(0.05)
        server.reset()
        after = threading.Thread(target=one, args=("after",))
        after.start()
        before.join(10)
        after.join(10)
        records = server.records()
    assert answers == {"before": 200, "after": 200}  # the held answer still went out
    assert records.request_ids == ["after"]
    # Its answer time is its own, not the earlier request's written into the new records.
    assert records.done_ns[0] - records.arrival_ns[0] >= 200 * MS


def test_holds_are_timers_not_work():
    # 40 concurrent requests of 100 ms each finish in about 100 ms, not 4 s.
    with GroundTruthServer("constant:100ms") as server:
        results: list[float] = []

        def one() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            start = time.perf_counter()
            post(conn)
            results.append(time.perf_counter() - start)

        threads = [threading.Thread(target=one) for _ in range(40)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(results) == 40 and time.perf_counter() - started < 1.0
        assert min(results) >= 0.1


@pytest.mark.parametrize("workers", [1, 2])
def test_with_workers_requests_queue_first_in_first_out(workers):
    # 6 concurrent requests of 50 ms: one worker serves them one after another (6 × 50 ms),
    # two serve them two at a time (3 × 50 ms); service starts when a worker is free.
    with GroundTruthServer("constant:50ms", workers=workers) as server:
        threads = [threading.Thread(target=lambda: post(
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)))
            for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        records = server.records()
    order = np.argsort(records.arrival_ns)
    finished_ms = np.sort(records.release_ns - records.arrival_ns.min()) / 1e6
    expected_ms = [50.0 * (i // workers + 1) for i in range(6)]
    # released exactly as the queue model says, up to the spread of the arrivals
    spread_ms = (records.arrival_ns.max() - records.arrival_ns.min()) / 1e6
    assert np.all(finished_ms >= np.array(expected_ms) - 1e-6)
    assert np.all(finished_ms <= np.array(expected_ms) + spread_ms + 1e-6)
    assert np.all(np.diff(records.release_ns[order][::workers]) >= 50 * MS)
    with pytest.raises(UsageError, match="--workers must be ≥ 0"):
        GroundTruthServer("constant:1ms", workers=-1)


def test_pipelined_requests_are_answered_in_order():
    # The first request's hold is longer than the second's; HTTP/1.1 still answers in order.
    with GroundTruthServer("exponential:mean=20ms", seed=3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            one = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            sock.sendall(one * 6)
            data = b""
            while data.count(b"HTTP/1.1 200") < 6 or not data.endswith(b"}"):
                data += sock.recv(65536)
        bodies = [json.loads(part[part.index(b"{"):]) for part in data.split(b"HTTP/1.1 ")[1:]]
        assert [b["index"] for b in bodies] == list(range(6))
        records = server.records()
        assert np.all(np.diff(records.done_ns) >= 0)  # written in order...
        assert not np.all(np.diff(records.release_ns) >= 0)  # ...though not due in order


def test_a_stall_holds_requests_until_it_ends():
    # Frozen during [400 ms, 600 ms) after the epoch. One request is sent mid-stall, one
    # is in service when the stall begins, one is calm.
    with GroundTruthServer("constant:20ms", stall_s=0.2, stall_every_s=0.6) as server:
        epoch_ns = server.reset()
        conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                 for _ in range(3)]
        for conn in conns:
            conn.connect()
        answers: dict[str, tuple[float, dict]] = {}

        def at(offset_s: float, name: str, conn: http.client.HTTPConnection) -> None:
            time.sleep(max(0.0, epoch_ns / 1e9 + offset_s - time.perf_counter()))
            start = time.perf_counter()
            phases = post(conn, name)[1]
            answers[name] = (time.perf_counter() - start, phases)

        plan = [(0.1, "calm"), (0.39, "caught"), (0.5, "frozen")]
        threads = [threading.Thread(target=at, args=(offset, name, conn))
                   for (offset, name), conn in zip(plan, conns, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        records = server.records()
    by_id = dict(zip(records.request_ids, range(3), strict=True))
    planned_ms = {name: (records.release_ns[i] - records.arrival_ns[i]) / 1e6
                  for name, i in by_id.items()}
    arrival_ms = {name: (records.arrival_ns[i] - epoch_ns) / 1e6 for name, i in by_id.items()}
    assert planned_ms["calm"] == pytest.approx(20, abs=1e-3)
    assert planned_ms["caught"] == pytest.approx(600 - arrival_ms["caught"], abs=1e-3)
    assert planned_ms["frozen"] == pytest.approx(600 - arrival_ms["frozen"] + 20, abs=1e-3)
    for name in planned_ms:  # the client saw the modelled hold (timers fire a little late)
        seen_ms = answers[name][0] * 1e3
        assert planned_ms[name] <= seen_ms <= planned_ms[name] + 25
        assert answers[name][1]["stall"] == pytest.approx(planned_ms[name] - 20, abs=2e-3)


def test_stats_endpoint_and_other_methods():
    with GroundTruthServer("constant:1ms") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        post(conn, "a")
        conn.request("GET", "/stats")
        doc = json.loads(conn.getresponse().read())
        from_http = GroundTruthRecords.from_json(doc)
        direct = server.records()
        assert from_http.request_ids == ["a"] == direct.request_ids
        assert from_http.done_ns.tolist() == direct.done_ns.tolist()
        conn.request("GET", "/anything")
        answer = conn.getresponse()
        assert answer.status == 405 and b"POST" in answer.read()
        conn.request("DELETE", "/stats")
        assert json.loads(conn.getresponse().read())["epoch_ns"] == server.records().epoch_ns
        assert server.records().request_ids == []


def test_records_are_bounded():
    with GroundTruthServer("constant:0", max_records=3) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        answers = [post(conn) for _ in range(5)]
        records = server.records()
    assert [a[0] for a in answers] == [200] * 5  # every request is still answered
    assert len(records.arrival_ns) == 3 and records.unrecorded == 2


def test_malformed_http_gets_400_and_a_close():
    with GroundTruthServer() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 400")


# ---------------------------------------------------------------- the server, as a process


def test_child_process_serves_and_reports():
    with GroundTruthProcess("exponential:mean=1ms", seed=9) as child:
        epoch_ns = child.reset()
        conn = http.client.HTTPConnection("127.0.0.1", child.port, timeout=10)
        sent_ns = time.perf_counter_ns()
        for i in range(10):
            post(conn, str(i))
        received_ns = time.perf_counter_ns()
        records = child.records()
        process = child.process
    assert process is not None and process.poll() is not None  # stopped on exit
    rng = np.random.default_rng(9)
    law = ServiceTime("exponential", 0.001)
    assert records.service_ns.tolist() == [round(law.draw_s(rng) * 1e9) for _ in range(10)]
    # One monotonic clock for both processes: the child's times fall inside the client's.
    assert epoch_ns < sent_ns <= records.arrival_ns[0]
    assert records.done_ns[-1] <= received_ns  # no answer is seen before it is sent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "gamma:5ms"], "--service"),  # unknown law
        (["--stall", "3s", "--stall-every", "1s"], "--stall"),  # stall longer than its period
        (["--stall", "soon"], "--stall"),  # not a duration
    ],
)
def test_command_line_errors_are_one_line(args, message):
    done = subprocess.run([sys.executable, "-m", "modelcaliper.testing.groundtruth", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert done.stderr.startswith("error: UsageError:")

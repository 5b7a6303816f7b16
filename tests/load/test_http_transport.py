"""The HTTP/1.1 transport against real servers on 127.0.0.1.

Most tests use the scripted server of ``http_harness`` (bytes captured server-side; answers
with delays, resets, early closes, 503s, chunking) and run the client on both the standard
asyncio loop and uvloop. The last ones drive ``caliper serve-model`` on an ONNX model.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import uvloop

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.load.http import HttpTransport, install_fast_loop
from modelcaliper.load.transport import Outcome, PreparedRequest, Status, Transport
from modelcaliper.wire import InferRequest, get_codec
from tests.load.http_harness import Captured, Reply, ScriptedServer, free_port
from tests.models import build_onnx_mlp, mlp_inputs

T = TypeVar("T")
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POST = PreparedRequest("/v1/models/m:predict", b'{"instances": [[1.0, 2.0]]}',
                       headers=(("Content-Type", "application/json"),))


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Which event loop the client runs on."""
    return str(request.param)


def run(loop_kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on a fresh loop of the given kind."""
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def send(transport: HttpTransport, request: PreparedRequest = POST, *, rid: str = "r-1",
               timeout_s: float = 5.0, keep_body: bool = False) -> Outcome:
    """One send with a fixed traceparent."""
    return await transport.send(request, request_id=rid, traceparent=TRACE, timeout_s=timeout_s,
                                keep_body=keep_body)


def scripted(replies: dict[int, Reply]) -> Callable[[Captured], Reply]:
    """A script answering the n-th request with ``replies[n]`` and every other with 200 ok."""
    return lambda captured: replies.get(captured.index, Reply())


def test_is_a_transport() -> None:
    assert isinstance(HttpTransport("http://127.0.0.1:1"), Transport)


# -- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "kwargs", "message"), [
    # TLS is not implemented; the message says so
    ("https://127.0.0.1:8501", {}, "https targets are not supported yet"),
    # only http URLs with a host
    ("ftp://127.0.0.1", {}, "must look like http://HOST:PORT"),
    ("127.0.0.1:8501", {}, "must look like http://HOST:PORT"),
    ("http://127.0.0.1:99999", {}, "invalid port"),
    # at least one connection, a positive connect timeout
    ("http://127.0.0.1:8501", {"connections": 0}, "--connections must be a whole number ≥ 1"),
    ("http://127.0.0.1:8501", {"connect_timeout_s": 0}, "connect timeout must be > 0"),
])
def test_bad_configuration_is_a_usage_error(url: str, kwargs: dict[str, Any],
                                            message: str) -> None:
    with pytest.raises(UsageError, match=message):
        HttpTransport(url, **kwargs)


def test_refused_connection_fails_fast_at_start(loop_kind: str) -> None:
    port = free_port()

    async def main() -> None:
        await HttpTransport(f"http://127.0.0.1:{port}", connections=2).start()

    started = time.perf_counter()
    with pytest.raises(TargetError) as info:
        run(loop_kind, main)
    assert str(info.value) == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert time.perf_counter() - started < 2.0


def test_install_fast_loop_selects_uvloop() -> None:
    previous = asyncio.get_event_loop_policy()
    try:
        assert install_fast_loop() == "uvloop"
        loop = asyncio.new_event_loop()
        assert isinstance(loop, uvloop.Loop)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(previous)


# -- bytes on the wire -------------------------------------------------------------------------

@pytest.mark.parametrize(("base_path", "request_", "rid", "trace", "expected_head"), [
    # POST with protocol headers: request line, Host, Content-Length, its headers, then ids
    ("", POST, "q7-3", TRACE,
     "POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 27\r\n"
     "Content-Type: application/json\r\nx-request-id: q7-3\r\ntraceparent: " + TRACE
     + "\r\n\r\n"),
    # a base URL path is a prefix of every request path; empty ids are left out
    ("/api/", PreparedRequest("/v2/models/m/infer", b"\x00\x01",
                              headers=(("Inference-Header-Content-Length", "0"),)), "", "",
     "POST /api/v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n"
     "Inference-Header-Content-Length: 0\r\n\r\n"),
    # GET without a body sends no Content-Length
    ("", PreparedRequest("/v2/health/ready", b"", method="GET"), "id", "",
     "GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-request-id: id\r\n\r\n"),
])
def test_request_bytes_on_the_wire(loop_kind: str, base_path: str, request_: PreparedRequest,
                                   rid: str, trace: str, expected_head: str) -> None:
    with ScriptedServer() as server:
        async def main() -> Outcome:
            async with HttpTransport(server.url + base_path, connections=1) as transport:
                return await transport.send(request_, request_id=rid, traceparent=trace,
                                            timeout_s=5)

        outcome = run(loop_kind, main)
        (captured,) = server.requests
        head = expected_head.format(port=server.port).encode()
        assert captured.head == head
        assert captured.body == request_.body
        assert outcome.request_bytes == len(head) + len(request_.body)


def test_header_values_with_line_breaks_are_refused(loop_kind: str) -> None:
    with ScriptedServer() as server:
        async def main() -> None:
            async with HttpTransport(server.url, connections=1) as transport:
                with pytest.raises(UsageError, match="line breaks"):
                    await send(transport, rid="a\r\nx-evil: 1")
                bad = PreparedRequest("/p", b"", headers=(("X-A", "1\r\nX-B: 2"),))
                with pytest.raises(UsageError, match="header 'X-A'"):
                    await send(transport, bad)

        run(loop_kind, main)
        assert server.requests == []


# -- answers -----------------------------------------------------------------------------------

def test_ok_outcome_fields_and_timestamps(loop_kind: str) -> None:
    reply = Reply(body=b'{"predictions": [1]}', delay_s=0.05,
                  headers=(("Server-Timing", "recv;dur=0.012, queue;dur=1.5"),
                           ("Server-Timing", 'compute;dur="3.25", total;dur=5'),
                           ("X-Other", "1")))
    with ScriptedServer(lambda c: reply) as server:
        async def main() -> Outcome:
            async with HttpTransport(server.url, connections=1) as transport:
                return await send(transport, keep_body=True)

        outcome = run(loop_kind, main)
    assert outcome.status is Status.OK and outcome.code == "200" and not outcome.error_kind
    assert outcome.body == b'{"predictions": [1]}'
    # headers come with a kept body, names lower-cased, repeated ones joined
    assert outcome.headers is not None and outcome.headers["x-other"] == "1"
    assert outcome.headers["server-timing"] == ('recv;dur=0.012, queue;dur=1.5, '
                                                'compute;dur="3.25", total;dur=5')
    # two Server-Timing header lines merge; a quoted duration is accepted
    assert outcome.server_timing_ms == {"recv": 0.012, "queue": 1.5, "compute": 3.25,
                                        "total": 5.0}
    assert 0 < outcome.sent_ns <= outcome.written_ns <= outcome.first_byte_ns <= outcome.done_ns
    assert outcome.first_byte_ns - outcome.sent_ns >= 50_000_000  # the server's delay
    assert outcome.response_bytes > len(b'{"predictions": [1]}')  # wire bytes, head included


@pytest.mark.parametrize(("reply", "kind", "message", "keep_body"), [
    # a JSON error body: its "error" string is the message
    (Reply(503, b'{"error": "queue full: 64 requests waiting"}'), "http_503",
     "queue full: 64 requests waiting", False),
    # a structured error is kept as compact JSON
    (Reply(400, b'{"error": {"tensor": "x"}}'), "http_400", '{"tensor":"x"}', False),
    # plain text: the text, on one line
    (Reply(502, b"bad gateway\nupstream down"), "http_502", "bad gateway upstream down", False),
    # no body at all: the code
    (Reply(500, b""), "http_500", "HTTP 500", False),
    # JSON without "error": the text itself
    (Reply(404, b'{"detail": "no such model"}'), "http_404", '{"detail": "no such model"}',
     True),
    # chunked error bodies are read the same way
    (Reply(429, b'{"error": "slow down"}', chunked=True), "http_429", "slow down", False),
])
def test_error_status_and_message(loop_kind: str, reply: Reply, kind: str, message: str,
                                  keep_body: bool) -> None:
    with ScriptedServer(scripted({0: reply})) as server:
        async def main() -> tuple[Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                return await send(transport, keep_body=keep_body), await send(transport)

        failed, after = run(loop_kind, main)
    assert failed.status is Status.ERROR and failed.code == str(reply.status)
    assert failed.error_kind == kind and failed.error_message == message
    assert failed.body == (reply.body if keep_body else None)
    # an HTTP error leaves the connection usable
    assert after.status is Status.OK and server.connections_accepted == 1


def test_long_error_message_is_cut() -> None:
    body = json.dumps({"error": "x" * 5000}).encode()
    with ScriptedServer(lambda c: Reply(500, body)) as server:
        async def main() -> Outcome:
            async with HttpTransport(server.url, connections=1) as transport:
                return await send(transport)

        outcome = run("asyncio", main)
    assert outcome.error_kind == "http_500" and len(outcome.error_message) == 200


@pytest.mark.parametrize(("reply", "reused"), [
    # Content-Length framing keeps the connection
    (Reply(body=b"a" * 3000), True),
    # chunked framing keeps the connection
    (Reply(body=b"b" * 3000, chunked=True), True),
    # a body ending at the close cannot keep it
    (Reply(body=b"c" * 3000, close_delimited=True), False),
    # neither can Connection: close
    (Reply(body=b"d" * 3000, connection_close=True), False),
])
def test_body_framings(loop_kind: str, reply: Reply, reused: bool) -> None:
    with ScriptedServer(lambda c: reply) as server:
        async def main() -> list[Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                return [await send(transport, keep_body=True) for _ in range(3)]

        outcomes = run(loop_kind, main)
    assert [o.status for o in outcomes] == [Status.OK] * 3
    assert all(o.body == reply.body for o in outcomes)
    assert server.connections_accepted == (1 if reused else 3)


def test_large_bodies_both_ways(loop_kind: str) -> None:
    payload = np.random.default_rng(0).bytes(1 << 20)
    request = PreparedRequest("/echo", payload)
    with ScriptedServer(lambda c: Reply(echo=True)) as server:
        async def main() -> tuple[Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                kept = await send(transport, request, keep_body=True)
                counted = await send(transport, request)
                return kept, counted

        kept, counted = run(loop_kind, main)
    assert [c.body == payload for c in server.requests] == [True, True]
    assert kept.status is Status.OK and kept.body == payload
    # without keep_body the body is counted, not kept
    assert counted.status is Status.OK and counted.body is None and counted.headers is None
    assert counted.response_bytes > len(payload) and counted.request_bytes > len(payload)
    assert counted.sent_ns < counted.written_ns <= counted.first_byte_ns


# -- the pool ----------------------------------------------------------------------------------

def test_keep_alive_reuses_n_connections_for_m_requests(loop_kind: str) -> None:
    with ScriptedServer(lambda c: Reply(delay_s=0.002)) as server:
        async def main() -> tuple[list[Outcome], int]:
            async with HttpTransport(server.url, connections=3) as transport:
                outcomes = await asyncio.gather(
                    *(send(transport, rid=f"r{i}") for i in range(60)))
                return outcomes, transport.connections_opened

        outcomes, opened = run(loop_kind, main)
    assert all(o.status is Status.OK for o in outcomes)
    assert opened == 3 and server.connections_accepted == 3
    assert sorted(c.header("x-request-id") for c in server.requests) == sorted(
        f"r{i}" for i in range(60))
    assert {c.header("traceparent") for c in server.requests} == {TRACE}
    assert {c.connection for c in server.requests} == {1, 2, 3}


def test_a_busy_pool_makes_requests_wait_before_sent(loop_kind: str) -> None:
    with ScriptedServer(lambda c: Reply(delay_s=0.05)) as server:
        async def main() -> tuple[list[Outcome], int, int]:
            async with HttpTransport(server.url, connections=1) as transport:
                called_ns = time.perf_counter_ns()
                outcomes = await asyncio.gather(*(send(transport) for _ in range(3)))
                return outcomes, called_ns, transport.pool_waits

        (first, second, third), called_ns, waits = run(loop_kind, main)
    assert waits == 2
    # the wait for the connection comes before sent_ns, where the driver sees it as lag
    assert second.sent_ns >= first.done_ns and third.sent_ns >= second.done_ns
    assert third.sent_ns - called_ns >= 100_000_000
    assert all(o.done_ns - o.sent_ns < 100_000_000 for o in (first, second, third))


# -- failures ----------------------------------------------------------------------------------

def test_timeout_closes_the_connection_and_later_requests_work(loop_kind: str) -> None:
    with ScriptedServer(scripted({0: Reply(delay_s=0.5, body=b"late")})) as server:
        async def main() -> tuple[Outcome, list[Outcome], int]:
            async with HttpTransport(server.url, connections=1) as transport:
                slow = await send(transport, timeout_s=0.1)
                later = [await send(transport, keep_body=True) for _ in range(3)]
                await asyncio.sleep(0.6)  # the late answer would have arrived by now
                later.append(await send(transport, keep_body=True))
                return slow, later, transport.connections_opened

        slow, later, opened = run(loop_kind, main)
    assert slow.status is Status.TIMEOUT and slow.error_kind == "timeout"
    assert slow.error_message == f"no complete response from 127.0.0.1:{server.port} within 0.1s"
    assert slow.sent_ns > 0 and 100_000_000 <= slow.done_ns - slow.sent_ns < 400_000_000
    # the timed-out connection was closed and replaced; nothing late leaks into later answers
    assert [o.status for o in later] == [Status.OK] * 4 and {o.body for o in later} == {b"ok"}
    assert opened == 2 and server.connections_accepted == 2


def test_timeout_while_waiting_for_a_connection(loop_kind: str) -> None:
    with ScriptedServer(scripted({0: Reply(delay_s=0.3)})) as server:
        async def main() -> tuple[Outcome, Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                hog = asyncio.ensure_future(send(transport))
                await asyncio.sleep(0.02)
                starved = await send(transport, timeout_s=0.05)
                return await hog, starved, await send(transport)

        hog, starved, after = run(loop_kind, main)
    assert hog.status is Status.OK
    assert starved.status is Status.TIMEOUT and starved.sent_ns == 0
    assert starved.error_message == "no free connection within 0.05s (all 1 busy)"
    # the hog's connection went back to the pool for the next request
    assert after.status is Status.OK and server.connections_accepted == 1


@pytest.mark.parametrize(("reply", "kind", "message"), [
    # reset after part of the head
    (Reply(reset_after_bytes=10), "reset", "connection reset by 127.0.0.1:{port}"),
    # orderly close mid-body
    (Reply(body=b"x" * 100, eof_after_bytes=60), "eof",
     "127.0.0.1:{port} closed the connection after 60 response bytes"),
    # orderly close before answering
    (Reply(eof_after_bytes=0), "eof",
     "127.0.0.1:{port} closed the connection before any response byte"),
    # a chunked body cut short
    (Reply(body=b"y" * 5000, chunked=True, eof_after_bytes=2000), "eof",
     "127.0.0.1:{port} closed the connection after 2000 response bytes"),
])
def test_broken_answers_are_errors_and_the_connection_is_replaced(
        loop_kind: str, reply: Reply, kind: str, message: str) -> None:
    with ScriptedServer(scripted({0: reply})) as server:
        async def main() -> tuple[Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                return await send(transport), await send(transport, keep_body=True)

        broken, after = run(loop_kind, main)
    assert broken.status is Status.ERROR and broken.error_kind == kind
    assert broken.error_message == message.format(port=server.port)
    assert broken.sent_ns > 0 and broken.done_ns >= broken.sent_ns
    assert after.status is Status.OK and after.body == b"ok"
    assert server.connections_accepted == 2


def test_a_stray_second_answer_does_not_desync_the_stream(loop_kind: str) -> None:
    replies = {0: Reply(body=b"first", twice=True)}
    with ScriptedServer(lambda c: replies.get(c.index, Reply(body=f"n{c.index}".encode()))) \
            as server:
        async def main() -> list[Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                outcomes = [await send(transport, keep_body=True)]
                await asyncio.sleep(0.05)
                outcomes += [await send(transport, keep_body=True) for _ in range(2)]
                return outcomes

        outcomes = run(loop_kind, main)
    assert [o.body for o in outcomes] == [b"first", b"n1", b"n2"]
    assert server.connections_accepted == 2


def test_malformed_answer_is_a_protocol_error(loop_kind: str) -> None:
    bad = Reply(status=200, headers=(("Content-Length", "zz"),), close_delimited=True)
    with ScriptedServer(scripted({0: bad})) as server:
        async def main() -> tuple[Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                return await send(transport), await send(transport)

        broken, after = run(loop_kind, main)
    assert broken.status is Status.ERROR and broken.error_kind == "protocol"
    assert broken.error_message.startswith(f"malformed HTTP response from 127.0.0.1:{server.port}")
    assert after.status is Status.OK


def test_server_gone_mid_run_gives_connect_errors(loop_kind: str) -> None:
    with ScriptedServer() as server:
        async def main() -> tuple[Outcome, Outcome]:
            async with HttpTransport(server.url, connections=1) as transport:
                first = await send(transport)
                server.stop_listening()
                await asyncio.sleep(0.05)  # let the client see the close
                return first, await send(transport)

        first, gone = run(loop_kind, main)
    assert first.status is Status.OK
    assert gone.status is Status.ERROR and gone.error_kind == "connect" and gone.sent_ns == 0
    assert gone.error_message == f"cannot connect to 127.0.0.1:{server.port}: Connection refused"


def test_cancelled_send_frees_its_connection(loop_kind: str) -> None:
    with ScriptedServer(scripted({0: Reply(delay_s=0.3)})) as server:
        async def main() -> Outcome:
            async with HttpTransport(server.url, connections=1) as transport:
                task = asyncio.ensure_future(send(transport))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                return await send(transport, keep_body=True, timeout_s=1.0)

        after = run(loop_kind, main)
    assert after.status is Status.OK and after.body == b"ok"
    assert server.connections_accepted == 2


def test_close_ends_requests_in_flight(loop_kind: str) -> None:
    with ScriptedServer(lambda c: Reply(delay_s=0.5)) as server:
        async def main() -> tuple[Outcome, Outcome]:
            transport = HttpTransport(server.url, connections=1)
            await transport.start()
            in_flight = asyncio.ensure_future(send(transport))
            await asyncio.sleep(0.05)
            await transport.close()
            return await in_flight, await send(transport)

        in_flight, after = run(loop_kind, main)
    assert in_flight.status is Status.ERROR and in_flight.error_kind == "closed"
    assert after.status is Status.ERROR and after.error_kind == "closed"


def test_idle_connection_closed_by_the_server_is_reopened(loop_kind: str) -> None:
    # the first answer is complete, then the server closes the idle connection (keep-alive
    # timeout): the next request reconnects instead of failing
    with ScriptedServer(scripted({0: Reply(eof_after_bytes=10**6)})) as server:
        async def main() -> tuple[Outcome, Outcome, int]:
            async with HttpTransport(server.url, connections=1) as transport:
                first = await send(transport)
                await asyncio.sleep(0.2)
                return first, await send(transport), transport.connections_opened

        first, second, opened = run(loop_kind, main)
    assert first.status is Status.OK and second.status is Status.OK
    assert opened == 2 and server.connections_accepted == 2


# -- the embedded model server -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``caliper serve-model`` on the ONNX MLP, on a free port; yields the HTTP port."""
    workdir = tmp_path_factory.mktemp("serve")
    model = build_onnx_mlp(workdir / "mlp.onnx")
    ready = workdir / "ready.json"
    log = (workdir / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelcaliper.cli.main", "serve-model", str(model),
         "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
         "--ready-file", str(ready)], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"serve-model did not start: {(workdir / 'stderr.log').read_text()}")
        time.sleep(0.05)
    try:
        yield int(json.loads(ready.read_text())["http_port"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.mark.parametrize("encoding", ["tfserving-rest rows", "v2-rest json", "v2-rest binary"])
def test_embedded_server_answers_with_timing(model_server: int, encoding: str) -> None:
    codec = get_codec(encoding)
    infer = InferRequest(mlp_inputs(5), model_name="mlp")
    encoded = codec.encode_request(infer)
    request = PreparedRequest(codec.path(infer), encoded.body,  # type: ignore[attr-defined]
                              headers=tuple(encoded.headers), rows=5)

    async def main() -> list[Outcome]:
        async with HttpTransport(f"http://127.0.0.1:{model_server}", connections=2) as transport:
            return list(await asyncio.gather(
                *(send(transport, request, rid=f"e{i}", keep_body=True) for i in range(8))))

    outcomes = run("uvloop", main)
    assert [o.status for o in outcomes] == [Status.OK] * 8
    for outcome in outcomes:
        assert outcome.server_timing_ms["total"] > 0 and "compute" in outcome.server_timing_ms
        assert outcome.body is not None
        assert outcome.headers is not None and "server-timing" in outcome.headers
        response = codec.decode_response(outcome.body, outcome.headers)
        (scores,) = response.outputs.values()
        assert scores.shape == (5, 1)


def test_embedded_server_error_message(model_server: int) -> None:
    request = PreparedRequest("/v2/models/mlp/infer", b'{"inputs": [{"name": "nope"}]}',
                              headers=(("Content-Type", "application/json"),))

    async def main() -> Outcome:
        async with HttpTransport(f"http://127.0.0.1:{model_server}", connections=1) as transport:
            return await send(transport, request)

    outcome = run("asyncio", main)
    assert outcome.status is Status.ERROR and outcome.error_kind == "http_400"
    assert outcome.error_message and outcome.error_message != "HTTP 400"

"""The HTTP/2 transport against hypercorn speaking h2c on 127.0.0.1.

One hypercorn server (in its own thread) serves a small ASGI router: the embedded server's
``HttpFrontEnd`` around the ONNX MLP for ``/v1`` and ``/v2`` paths, and a few scripted
routes under ``/t`` (echo, delay, status, a broken app) that count the requests they hold at
once. A second server is limited to 4 concurrent streams per connection.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import numpy as np
import pytest
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from modelcaliper.errors import TargetError
from modelcaliper.load.http import HttpTransport
from modelcaliper.load.http2 import Http2Transport
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.transport import Outcome, PreparedRequest, Status, Transport
from modelcaliper.load.workers import TransportRecipe, run_load
from modelcaliper.server.http import HttpFrontEnd
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.runtimes import open_runtime
from modelcaliper.server.service import ModelService
from modelcaliper.wire import InferRequest, get_codec
from tests.load.http_harness import free_port
from tests.models import build_onnx_mlp, mlp_inputs

T = TypeVar("T")
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MIB = 1024 * 1024


class Router:
    """Model paths to the embedded front end; ``/t/...`` to scripted answers."""

    def __init__(self, front: Any) -> None:
        self.front = front
        self.active = 0
        self.peak = 0
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/t/"):
            await self.front(scope, receive, send)
            return
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self._scripted(scope, receive, send)
        finally:
            self.active -= 1

    async def _scripted(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({**headers, ":path": scope["path"], "body-length": str(len(body))})
        _, _, kind, arg = (scope["path"] + "/").split("/", 3)
        arg = arg.strip("/")
        status, out = 200, b"ok"
        if kind == "echo":
            out = body
        elif kind == "sleep":
            await asyncio.sleep(float(arg))
        elif kind == "status":
            status, out = int(arg), b'{"error": "model is warming up"}'
        elif kind == "boom":  # the app dies after answering headers: the stream is reset
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"server-timing", b"compute;dur=1.5, total;dur=2")]})
        await send({"type": "http.response.body", "body": out})


class H2cServer:
    """hypercorn on a 127.0.0.1 port, in a thread with its own event loop."""

    def __init__(self, app: Any, max_streams: int = 100) -> None:
        self.port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.h2_max_concurrent_streams = max_streams
        config.accesslog = None
        config.errorlog = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, daemon=True,
                                        args=(serve(app, config,  # type: ignore[arg-type]
                                                    shutdown_trigger=self._stop.wait),))
        self._thread.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_mlp(tmp_path_factory.mktemp("h2") / "mlp.onnx")


@pytest.fixture(scope="module")
def router(model_path: Path) -> Router:
    service = ModelService(open_runtime(model_path), model_name="mlp", version="1")
    service.ready = True
    return Router(HttpFrontEnd(service, Metrics(), max_body_bytes=8 * MIB))


@pytest.fixture(scope="module")
def server(router: Router) -> Iterator[H2cServer]:
    running = H2cServer(router)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def narrow_server(router: Router) -> Iterator[H2cServer]:
    running = H2cServer(router, max_streams=4)
    yield running
    running.stop()


def run(main: Callable[[], Awaitable[T]], loop_kind: str = "uvloop") -> T:
    """Run ``main()`` on a fresh loop of the given kind."""
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def send(transport: Transport, request: PreparedRequest, *, rid: str = "r-1",
               timeout_s: float = 10.0, keep_body: bool = False) -> Outcome:
    return await transport.send(request, request_id=rid, traceparent=TRACE, timeout_s=timeout_s,
                                keep_body=keep_body)


def model_request(encoding: str, rows: int = 5) -> PreparedRequest:
    codec = get_codec(encoding)
    infer = InferRequest(mlp_inputs(rows), model_name="mlp")
    encoded = codec.encode_request(infer)
    return PreparedRequest(codec.path(infer), encoded.body,  # type: ignore[attr-defined]
                           headers=tuple(encoded.headers), rows=rows)


def scripted(path: str, body: bytes = b"", method: str = "POST") -> PreparedRequest:
    return PreparedRequest(path, body, headers=(("Content-Type", "application/octet-stream"),
                                                ("Connection", "keep-alive")), method=method)


def test_is_a_transport() -> None:
    assert isinstance(Http2Transport("http://127.0.0.1:1"), Transport)


@pytest.mark.parametrize("recipe, expected", [
    (TransportRecipe("v2-rest", "http://127.0.0.1:1", 2, http2=True), Http2Transport),  # flag on
    (TransportRecipe("v2-rest", "http://127.0.0.1:1", 2), HttpTransport),  # default HTTP/1.1
])
def test_recipe_chooses_the_transport(recipe: TransportRecipe, expected: type) -> None:
    assert type(recipe()) is expected


def test_refused_connection_fails_fast_at_start() -> None:
    async def main() -> None:
        await Http2Transport(f"http://127.0.0.1:{free_port()}", connections=2).start()

    started = time.perf_counter()
    with pytest.raises(TargetError, match="cannot connect to 127.0.0.1"):
        run(main, "asyncio")
    assert time.perf_counter() - started < 2


def test_an_http1_only_server_is_refused_at_start() -> None:
    # a server that answers the preface with HTTP/1.1 garbage, then closes
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()

    async def main() -> None:
        port = listener.getsockname()[1]
        await Http2Transport(f"http://127.0.0.1:{port}", connections=1).start()

    with pytest.raises(TargetError, match="over HTTP/2"):
        run(main, "asyncio")
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("encoding", ["v2-rest binary", "tfserving-rest rows"])
def test_model_requests_round_trip(server: H2cServer, encoding: str, loop_kind: str) -> None:
    request = model_request(encoding)

    async def main() -> list[Outcome]:
        async with Http2Transport(server.url, connections=1) as transport:
            return list(await asyncio.gather(
                *(send(transport, request, rid=f"m{i}", keep_body=True) for i in range(6))))

    outcomes = run(main, loop_kind)
    codec = get_codec(encoding)
    for outcome in outcomes:
        assert outcome.status is Status.OK and outcome.code == "200"
        assert outcome.server_timing_ms["total"] > 0 and "compute" in outcome.server_timing_ms
        assert outcome.sent_ns <= outcome.written_ns <= outcome.first_byte_ns <= outcome.done_ns
        assert outcome.request_bytes > len(request.body)  # frames: headers and DATA framing
        assert outcome.body is not None and outcome.response_bytes > len(outcome.body)
        assert outcome.headers is not None and "server-timing" in outcome.headers
        (scores,) = codec.decode_response(outcome.body, outcome.headers).outputs.values()
        assert scores.shape == (5, 1) and np.isfinite(scores).all()


def test_headers_sent(server: H2cServer, router: Router) -> None:
    async def main() -> Outcome:
        async with Http2Transport(server.url + "/t", connections=1) as transport:
            return await send(transport, scripted("/echo", b"abc"), rid="id-7")

    router.seen.clear()
    outcome = run(main)
    assert outcome.status is Status.OK
    (seen,) = router.seen
    # the base URL's path prefixes the request path; per-request headers are added; the
    # connection-specific header is dropped (forbidden in HTTP/2)
    assert seen[":path"] == "/t/echo" and seen["x-request-id"] == "id-7"
    assert seen["traceparent"] == TRACE and seen["content-length"] == "3"
    assert seen["content-type"] == "application/octet-stream" and "connection" not in seen


def test_many_streams_share_one_connection(server: H2cServer, router: Router) -> None:
    async def main() -> tuple[list[Outcome], int]:
        async with Http2Transport(server.url, connections=1) as transport:
            outcomes = await asyncio.gather(
                *(send(transport, scripted("/t/sleep/0.3"), rid=f"c{i}") for i in range(40)))
            return list(outcomes), transport.connections_opened

    router.peak = 0
    started = time.perf_counter()
    outcomes, opened = run(main)
    elapsed = time.perf_counter() - started
    assert [o.status for o in outcomes] == [Status.OK] * 40
    assert opened == 1 and router.peak == 40  # all 40 were in the server at once
    assert elapsed < 2.5  # concurrent, not 40 × 0.3 s


def test_max_concurrent_streams_is_honoured(narrow_server: H2cServer, router: Router) -> None:
    async def main() -> tuple[list[Outcome], int]:
        async with Http2Transport(narrow_server.url, connections=2) as transport:
            outcomes = await asyncio.gather(
                *(send(transport, scripted("/t/sleep/0.1"), rid=f"n{i}") for i in range(24)))
            return list(outcomes), transport.stream_waits

    router.peak = 0
    outcomes, waits = run(main)
    # 2 connections × 4 streams: never refused, the rest queued in the client
    assert [o.status for o in outcomes] == [Status.OK] * 24
    assert router.peak == 8 and waits >= 16


@pytest.mark.parametrize("size", [MIB, 5 * MIB])
def test_large_bodies_both_ways(server: H2cServer, size: int) -> None:
    body = np.random.default_rng(size).bytes(size)

    async def main() -> list[Outcome]:
        async with Http2Transport(server.url, connections=1) as transport:
            return list(await asyncio.gather(
                *(send(transport, scripted("/t/echo", body), rid=f"b{i}", keep_body=True)
                  for i in range(3))))

    for outcome in run(main):
        # bigger than every default flow-control window, so WINDOW_UPDATEs were needed
        assert outcome.status is Status.OK and outcome.body == body
        assert outcome.request_bytes > size and outcome.response_bytes > size


def test_timeout_resets_the_stream_and_keeps_the_connection(server: H2cServer) -> None:
    async def main() -> tuple[Outcome, Outcome, Outcome, int]:
        async with Http2Transport(server.url, connections=1) as transport:
            slow, quick = await asyncio.gather(
                send(transport, scripted("/t/sleep/2"), timeout_s=0.2),
                send(transport, scripted("/t/sleep/0.3"), timeout_s=5))
            after = await send(transport, scripted("/t/echo", b"x"))
            return slow, quick, after, transport.connections_opened

    slow, quick, after, opened = run(main)
    assert slow.status is Status.TIMEOUT and slow.error_kind == "timeout"
    assert "within 0.2s" in slow.error_message and slow.sent_ns > 0
    assert 0.15e9 < slow.done_ns - slow.sent_ns < 1e9
    # the other stream on the same connection was not disturbed, nor later ones
    assert quick.status is Status.OK and after.status is Status.OK and opened == 1


@pytest.mark.parametrize("path, kind, message", [
    ("/t/status/503", "http_503", "model is warming up"),  # error body's message kept
    ("/t/status/404", "http_404", "model is warming up"),  # client error status
    ("/v2/models/nope/infer", "http_404", "nope"),  # the real front end's answer
])
def test_error_answers(server: H2cServer, path: str, kind: str, message: str) -> None:
    async def main() -> Outcome:
        async with Http2Transport(server.url, connections=1) as transport:
            return await send(transport, scripted(path, b"{}"))

    outcome = run(main)
    assert outcome.status is Status.ERROR and outcome.error_kind == kind
    assert outcome.code == kind[5:] and message in outcome.error_message


def test_a_broken_app_costs_its_connection_then_reconnects(server: H2cServer) -> None:
    async def main() -> tuple[Outcome, Outcome, int]:
        async with Http2Transport(server.url, connections=1) as transport:
            broken = await send(transport, scripted("/t/boom"))
            after = await send(transport, scripted("/t/echo", b"y"))
            return broken, after, transport.connections_opened

    broken, after, opened = run(main)
    # hypercorn drops the connection when an app dies mid-answer; the next send reconnects
    assert broken.status is Status.ERROR and broken.error_kind in ("eof", "reset")
    assert broken.first_byte_ns > 0 and after.status is Status.OK and opened == 2


class RawH2Server:
    """A bare HTTP/2 server written with ``h2`` itself: ``/rst`` is refused with RST_STREAM,
    ``/goaway`` gets a GOAWAY, ``/drop`` a closed socket, anything else 200 ``ok``."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        paths: dict[int, bytes] = {}
        with sock:
            while data := sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers)[b":path"]
                    elif isinstance(event, h2.events.StreamEnded):
                        path = paths.pop(event.stream_id)
                        if path == b"/drop":
                            return  # the socket closes with the stream unanswered
                        if path == b"/rst":
                            conn.reset_stream(event.stream_id,
                                              h2.errors.ErrorCodes.REFUSED_STREAM)
                        elif path == b"/goaway":
                            conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                        else:
                            conn.send_headers(event.stream_id, [(":status", "200")])
                            conn.send_data(event.stream_id, b"ok", end_stream=True)
                sock.sendall(conn.data_to_send())

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept, stops listening
        self.listener.close()


def test_rst_stream_and_goaway_are_errors() -> None:
    raw = RawH2Server()

    async def main() -> list[Outcome]:
        async with Http2Transport(f"http://127.0.0.1:{raw.port}", connections=1) as transport:
            return [await send(transport, scripted(path, b"."))
                    for path in ("/ok", "/rst", "/ok", "/goaway", "/ok")]

    ok, refused, ok_again, goaway, reconnected = run(main, "asyncio")
    raw.close()
    assert ok.status is ok_again.status is reconnected.status is Status.OK
    # RST_STREAM names its code and spares the connection
    assert refused.error_kind == "h2_REFUSED_STREAM" and "REFUSED_STREAM" in refused.error_message
    # GOAWAY fails the stream in flight; the next request opened a new connection
    assert goaway.error_kind == "goaway" and "ENHANCE_YOUR_CALM" in goaway.error_message


def test_server_gone_gives_errors_then_reconnects() -> None:
    raw = RawH2Server()

    async def main() -> tuple[Outcome, Outcome, Outcome, int]:
        async with Http2Transport(f"http://127.0.0.1:{raw.port}", connections=1) as transport:
            dropped = await send(transport, scripted("/drop", b"."))
            back = await send(transport, scripted("/ok", b"."))
            raw.close()
            transport._slots[0].abort("closed", "test")  # type: ignore[union-attr]
            refused = await send(transport, scripted("/ok", b"."))
            return dropped, back, refused, transport.connections_opened

    dropped, back, refused, opened = run(main, "asyncio")
    assert dropped.status is Status.ERROR and dropped.error_kind == "eof"
    assert back.status is Status.OK and opened == 2  # reconnected lazily
    # nothing listens any more: the replacement connection is refused, as data
    assert refused.error_kind == "connect" and str(raw.port) in refused.error_message


def test_cancelled_send_frees_its_stream(narrow_server: H2cServer) -> None:
    async def main() -> Outcome:
        async with Http2Transport(narrow_server.url, connections=1) as transport:
            tasks = [asyncio.ensure_future(send(transport, scripted("/t/sleep/5")))
                     for _ in range(4)]
            await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return await send(transport, scripted("/t/echo", b"q"), timeout_s=2)

    assert run(main).status is Status.OK  # all 4 slots came back


def test_close_ends_requests_in_flight(server: H2cServer) -> None:
    async def main() -> Outcome:
        transport = Http2Transport(server.url, connections=1)
        await transport.start()
        task = asyncio.ensure_future(send(transport, scripted("/t/sleep/5")))
        await asyncio.sleep(0.2)
        await transport.close()
        return await task

    outcome = run(main)
    assert outcome.status is Status.ERROR and outcome.error_kind == "closed"


@pytest.mark.slow
def test_driver_run_over_http2(server: H2cServer) -> None:
    request = model_request("v2-rest binary", rows=2)
    spec = LoadSpec(rate_per_s=200, max_requests=200, seed=3, connections=2, http2=True)
    pool = RequestPool(((request,),), "v2-rest binary", "none", "http", 0.0, len(request.body))
    result = run_load(spec, spec.plan(), pool,
                      TransportRecipe("v2-rest", server.url, spec.connections, spec.http2),
                      handle_sigint=False)
    stats = result.stats
    assert stats.sent == 200 and int(stats.status_counts[Status.OK]) == 200
    assert stats.histograms["compute"].count == 200  # Server-Timing reached the histograms
    assert stats.histograms["latency"].percentile(50) > 0

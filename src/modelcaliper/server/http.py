"""The HTTP front end of the embedded server: a plain ASGI app for uvicorn (httptools + uvloop).

It speaks both REST dialects from one port:

    TF Serving   POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict   (rows or columnar)
                 GET  /v1/models/{m}[...]            status
                 GET  /v1/models/{m}[...]/metadata   signature
                 :classify and :regress answer 501 (only the Predict API is served)
    v2 (OIP)     GET  /v2, /v2/health/live, /v2/health/ready
                 GET  /v2/models/{m}[/versions/{v}][/ready]
                 POST /v2/models/{m}[/versions/{v}]/infer             (JSON or binary tensors)
    Prometheus   GET  /metrics, /monitoring/prometheus/metrics
    Profiling    POST /caliper/profile/start, /caliper/profile/stop   (loopback clients only;
                 see modelcaliper.profile.capture)

No framework sits on the hot path: one dispatch on the path prefix, one codec call each way.
Bodies are limited to ``max_body_bytes``: a larger ``Content-Length`` is refused with 413
before a byte is read, a streamed body is cut off at the limit, and a compressed body may
not expand past it. The bodies held at once share a budget (``max_buffered_bytes``, 503
beyond it). Responses of 1 KiB or more are compressed as ``Accept-Encoding`` allows.

Every response carries ``Server-Timing`` (inference responses list recv, decode, queue,
batch, compute and encode, zero for phases a request never reached) and echoes the client's
``x-request-id``. Errors are ``{"error": "..."}`` with the status ``classify_failure`` gives;
an unexpected exception is answered with 500 and logged, and the server keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

import orjson

from modelcaliper import __version__
from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.profile.capture import ADMIN_PREFIX, ProfileAdmin
from modelcaliper.server.batching import OverloadedError
from modelcaliper.server.logging import EventLog
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.service import Failure, ModelService, classify_failure
from modelcaliper.server.timing import (
    REPORTED_PHASES,
    PhaseTimer,
    charge_failed_phase,
    format_server_timing,
)
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES, Encoded
from modelcaliper.wire.compression import Compression, compress, decompress
from modelcaliper.wire.jsoncodec import error_body
from modelcaliper.wire.openinference_rest import (
    V2RestCodec,
    encode_health,
    encode_model_metadata,
    encode_server_metadata,
    parse_v2_path,
)
from modelcaliper.wire.tensors import InferRequest
from modelcaliper.wire.tfserving_rest import (
    ModelVersionStatus,
    TFServingRestCodec,
    encode_model_status,
    parse_model_path,
)
from modelcaliper.wire.tfserving_rest import encode_model_metadata as encode_tf_metadata

__all__ = ["COMPRESS_MIN_BYTES", "HttpFrontEnd", "METRICS_PATHS", "choose_encoding"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

COMPRESS_MIN_BYTES = 1024
"""Smaller responses are sent as they are: compressing them saves less than it costs."""
METRICS_PATHS = ("/metrics", "/monitoring/prometheus/metrics")

_PREFERENCE: tuple[Compression, ...] = ("zstd", "gzip", "deflate")
_REQUEST_ENCODINGS: dict[str, Compression] = {
    "identity": "none", "gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "zstd": "zstd",
}
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON = (("content-type", "application/json"),)


class HttpError(Exception):
    """A routing-level refusal (unknown path, wrong method, unsupported API) with its status."""

    def __init__(self, status: int, grpc_code: str, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.failure = Failure(status, grpc_code, message)
        self.allow = allow


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


@lru_cache(maxsize=256)
def choose_encoding(accept_encoding: str) -> Compression:
    """The response compression an ``Accept-Encoding`` value allows: best q, then zstd > gzip
    > deflate; ``none`` when none of them is acceptable."""
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        token, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if token:
            weights[token] = q
    best: Compression = "none"
    best_q = 0.0
    for name in _PREFERENCE:
        q = weights.get(name, weights.get("x-gzip" if name == "gzip" else name, -1.0))
        if q < 0:
            q = weights.get("*", 0.0)
        if q > best_q:
            best, best_q = name, q
    return best


class _Reply:
    """One response on its way out: status, body and headers."""

    __slots__ = ("status", "body", "headers", "grpc_code", "rows")

    def __init__(self, encoded: Encoded, status: int = 200, grpc_code: str = "OK") -> None:
        self.status = status
        self.body = encoded.body
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in encoded.headers]
        self.grpc_code = grpc_code
        self.rows = 0


class _Call:
    """What one request has become so far: its API, body bytes held, how to end it."""

    __slots__ = ("api", "infer", "held_bytes", "unread", "client")

    def __init__(self, client: str | None = None) -> None:
        self.client = client  # the peer's address, for the loopback-only admin routes
        self.api = "unknown"
        self.infer = False  # an inference call: its timing lists every phase
        self.held_bytes = 0  # body bytes counted against the shared budget
        self.unread = False  # refused before its body was read in full: close the connection


class HttpFrontEnd:
    """The ASGI application serving one ``ModelService`` over TF Serving REST and v2 REST."""

    def __init__(
        self,
        service: ModelService,
        metrics: Metrics,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_buffered_bytes: int | None = None,
        log: EventLog | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_buffered_bytes = max_buffered_bytes or max(4 * max_body_bytes, 256 << 20)
        self.log = log or EventLog()
        signature = service.runtime.signature
        self._tf = TFServingRestCodec("rows", signature=signature, max_body_bytes=max_body_bytes)
        self._v2 = V2RestCodec(max_body_bytes=max_body_bytes)
        self._profiler = ProfileAdmin(service.runtime)
        self._buffered_bytes = 0
        self._errors_logged_s = 0.0
        self._errors_suppressed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        timer = PhaseTimer()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        call = _Call((scope.get("client") or (None,))[0])
        try:
            reply = await self._route(scope["path"], scope["method"], receive, headers, timer,
                                      call)
        except _ClientGone:
            self._buffered_bytes -= call.held_bytes
            self._record(call, "CANCELLED", {}, 0)
            return
        except Exception as exc:
            failure = exc.failure if isinstance(exc, HttpError) else classify_failure(exc)
            reply = _Reply(error_body(failure.message), failure.http_status, failure.grpc_code)
            if isinstance(exc, HttpError) and exc.allow:
                reply.headers.append((b"allow", exc.allow.encode()))
            if call.infer:
                charge_failed_phase(timer)
            call.unread = call.unread or isinstance(exc, PayloadTooLargeError)
            if failure.http_status == 500:
                self._log_failure(scope, failure)
        self._buffered_bytes -= call.held_bytes
        await self._respond(send, reply, headers, timer, call)

    async def _route(
        self, path: str, method: str, receive: Receive, headers: dict[str, str],
        timer: PhaseTimer, call: _Call,
    ) -> _Reply:
        if path.startswith("/v1/models/"):
            return await self._tf_route(path, method, receive, headers, timer, call)
        if path == "/v2" or path.startswith("/v2/"):
            return await self._v2_route(path, method, receive, headers, timer, call)
        if path.startswith(ADMIN_PREFIX):
            call.api = "profile"
            body = await self._read_body(receive, headers, timer, call) if method == "POST" else b""
            status, code, document = await self._profiler.handle(path, method, body, call.client)
            return _Reply(Encoded(orjson.dumps(document), _JSON), status, code)
        if path in METRICS_PATHS:
            call.api = "metrics"
            _require(method, "GET")
            body = self.metrics.render().encode()
            return _Reply(Encoded(body, (("content-type", _METRICS_TYPE),)))
        raise HttpError(404, "NOT_FOUND", f"no route for {method} {path}; see /v2 and /v1/models/")

    async def _tf_route(
        self, path: str, method: str, receive: Receive, headers: dict[str, str],
        timer: PhaseTimer, call: _Call,
    ) -> _Reply:
        try:
            where = parse_model_path(path)
        except WireError as exc:
            raise HttpError(404, "NOT_FOUND", str(exc)) from None
        service = self.service
        call.api = where.verb if where.verb in ("predict", "classify", "regress") \
            else f"model_{where.verb}"
        if where.verb in ("classify", "regress"):
            raise HttpError(501, "UNIMPLEMENTED", f"the :{where.verb} API is not supported; "
                            "this server serves :predict only")
        if where.verb != "predict":
            _require(method, "GET")
            service.check_model(where.model, where.version, where.label)
            if where.verb == "status":
                state = "AVAILABLE" if service.ready else "LOADING"
                return _Reply(encode_model_status([ModelVersionStatus(service.version, state)]))
            return _Reply(encode_tf_metadata(service.runtime.signature, service.model_name,
                                             service.version))
        call.infer = True
        _require(method, "POST")
        service.check_ready(where.model, where.version, where.label)
        body = await self._read_body(receive, headers, timer, call)
        request = self._tf.decode_request(body, headers, path=path)
        return await self._infer(request, self._tf, timer)

    async def _v2_route(
        self, path: str, method: str, receive: Receive, headers: dict[str, str],
        timer: PhaseTimer, call: _Call,
    ) -> _Reply:
        try:
            where = parse_v2_path(path)
        except WireError as exc:
            raise HttpError(404, "NOT_FOUND", str(exc)) from None
        service = self.service
        route = where.route
        call.api = f"health_{route}" if route in ("live", "ready") else route
        if route != "infer":
            _require(method, "GET")
            if route == "server_metadata":
                return _Reply(encode_server_metadata("modelcaliper", __version__))
            if route == "live":
                return _Reply(encode_health("live", True))
            if route != "ready":
                service.check_model(where.model or "", where.version)
            if route in ("ready", "model_ready"):
                ready = service.ready
                return _Reply(encode_health("ready", ready), *((200, "OK") if ready else
                                                               (503, "UNAVAILABLE")))
            return _Reply(encode_model_metadata(service.runtime.signature, service.model_name,
                                                [service.version], service.runtime.platform))
        call.infer = True
        _require(method, "POST")
        service.check_ready(where.model or "", where.version)
        body = await self._read_body(receive, headers, timer, call)
        request = self._v2.decode_request(body, headers, path=path)
        return await self._infer(request, self._v2, timer)

    async def _infer(
        self, request: InferRequest, codec: TFServingRestCodec | V2RestCodec, timer: PhaseTimer
    ) -> _Reply:
        timer.lap("decode")
        response = await self.service.infer(request, timer)
        reply = _Reply(codec.encode_response(response, request))
        reply.rows = request.batch_size
        return reply

    async def _read_body(
        self, receive: Receive, headers: dict[str, str], timer: PhaseTimer, call: _Call
    ) -> bytes:
        """The request body, within the size limits, decompressed; charged to ``recv``."""
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                call.unread = True
                raise WireError(f"Content-Length {declared!r} is not a number")
            if int(declared) > limit:
                raise PayloadTooLargeError(f"body of {int(declared)} bytes (Content-Length) "
                                           f"exceeds the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"body exceeds the {limit}-byte limit")
                self._hold(call, len(chunk))
                chunks.append(chunk)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        timer.lap("recv")
        encoding = headers.get("content-encoding")
        if encoding is not None:
            codec = _REQUEST_ENCODINGS.get(encoding.strip().lower())
            if codec is None:
                raise WireError(f"unsupported Content-Encoding '{encoding}'; send gzip, deflate, "
                                "zstd or identity")
            if codec != "none":
                body = decompress(body, codec, limit)
                self._hold(call, len(body))
        return body

    def _hold(self, call: _Call, size: int) -> None:
        """Count ``size`` more bytes against the budget shared by every request in memory."""
        if self._buffered_bytes + size > self.max_buffered_bytes:
            call.unread = True
            raise OverloadedError(
                f"request bodies held in memory would exceed {self.max_buffered_bytes} bytes")
        self._buffered_bytes += size
        call.held_bytes += size

    async def _respond(
        self, send: Send, reply: _Reply, request_headers: dict[str, str], timer: PhaseTimer,
        call: _Call,
    ) -> None:
        body = reply.body
        headers = reply.headers
        accept = request_headers.get("accept-encoding")
        if accept is not None and len(body) >= COMPRESS_MIN_BYTES:
            chosen = choose_encoding(accept)
            if chosen != "none":
                body = compress(body, chosen)
                headers.append((b"content-encoding", chosen.encode()))
                headers.append((b"vary", b"accept-encoding"))
        timer.lap("encode")
        phases = timer.finish()
        if call.infer:
            for phase in REPORTED_PHASES:
                phases.setdefault(phase, 0.0)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"server-timing", format_server_timing(phases).encode()))
        request_id = request_headers.get("x-request-id")
        if request_id is not None:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        if call.unread:
            headers.append((b"connection", b"close"))
        self._record(call, reply.grpc_code, phases, reply.rows)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _record(self, call: _Call, status: str, phases_ms: dict[str, float], rows: int) -> None:
        """Metrics of one request; only inference calls feed the latency and phase histograms."""
        self.metrics.record_request(
            model=self.service.model_name, api=call.api, entrypoint="REST", status=status,
            phases_ms=phases_ms if call.infer else {}, batch_rows=rows)

    def _log_failure(self, scope: Scope, failure: Failure) -> None:
        """Log a 500, at most one line per second; the others are counted in the next line."""
        now = time.monotonic()
        if now - self._errors_logged_s < 1.0:
            self._errors_suppressed += 1
            return
        self.log.error("request_failed", path=scope.get("path"), status=failure.http_status,
                       error=failure.message, suppressed_since_last=self._errors_suppressed)
        self._errors_logged_s = now
        self._errors_suppressed = 0


def _require(method: str, wanted: str) -> None:
    if method != wanted:
        raise HttpError(405, "UNIMPLEMENTED", f"use {wanted} here, not {method}", allow=wanted)

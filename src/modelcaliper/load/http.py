"""The HTTP/1.1 transport: a keep-alive connection pool sending prepared requests.

``HttpTransport`` keeps ``connections`` connections to one ``http://`` target. A request takes
a free connection (waiting for one if all are busy), writes its bytes in one call and waits for
the response; the connection then goes back to the pool. The wait for a free connection -- and
a reconnect, when the connection it got had been closed -- happens before ``sent_ns``, so the
driver sees it in the gap between the intended and the actual send time (schedule lag /
client queue), never hidden inside the server's latency.

Request bytes are a prefix built once per ``PreparedRequest`` (request line, ``Host``,
``Content-Length`` and its headers), then the per-request ``x-request-id`` and ``traceparent``
lines, the blank line and the body. ``request_bytes`` and ``response_bytes`` in the outcome
count wire bytes, headers included.

``timeout_s`` bounds the whole ``send`` call: waiting for a connection, reconnecting and the
exchange. A request that times out in flight closes its connection (a late answer would
otherwise be read as the next request's); the pool reconnects lazily. ``sent_ns == 0`` in an
outcome means the request never reached the socket.

HTTPS is not supported yet; HTTP/2 (h2c) is ``load.http2.Http2Transport`` (``--http2``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.load.http_conn import HttpConnection
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from modelcaliper.server.timing import parse_server_timing

__all__ = ["HttpTransport", "install_fast_loop"]

T = TypeVar("T")

_PREFIX_CACHE_LIMIT = 4096  # distinct prepared requests remembered (a run reuses a small pool)
_MESSAGE_LIMIT_CHARS = 200


def install_fast_loop() -> str:
    """Make new asyncio event loops uvloop's when it is installed; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def target_setup(base_url: str, connections: int,
                 connect_timeout_s: float) -> tuple[str, int, str, str, str]:
    """Validate a transport's pool settings; ``(host, port, host header, path prefix,
    address)`` of ``base_url``, the address being ``host:port`` as error messages name it."""
    if isinstance(connections, bool) or int(connections) != connections or connections < 1:
        raise UsageError(f"--connections must be a whole number ≥ 1, got {connections!r}")
    if not connect_timeout_s > 0:
        raise UsageError(f"connect timeout must be > 0 s, got {connect_timeout_s!r}")
    host, port, host_header, prefix = _split_base_url(base_url)
    shown = f"[{host}]" if ":" in host else host
    return host, port, host_header, prefix, f"{shown}:{port}"


def _split_base_url(base_url: str) -> tuple[str, int, str, str]:
    """``(host, port, host header, path prefix)`` of an ``http://`` URL, or a UsageError."""
    parts = urllib.parse.urlsplit(base_url.strip())
    if parts.scheme == "https":
        raise UsageError(f"https targets are not supported yet, got {base_url!r}: "
                         "use an http:// URL (TLS is not implemented)")
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"the target URL must look like http://HOST:PORT, got {base_url!r}")
    try:
        port = parts.port or 80
    except ValueError:
        raise UsageError(f"the target URL has an invalid port: {base_url!r}") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == 80 else f"{shown}:{port}"
    return host, port, host_header, parts.path.rstrip("/")


def _header_text(name: str, value: str) -> str:
    """One ``name: value`` line, refusing characters that would split the header."""
    if any(c in name or c in value for c in "\r\n\0") or ":" in name or not name.strip():
        raise UsageError(f"header {name!r} has a name or value that cannot be sent over HTTP")
    return f"{name}: {value}\r\n"


def _error_message(code: int, body: bytes) -> str:
    """The ``{"error": ...}`` message of an error body, else its first text, else the code."""
    text = ""
    if body[:1] in (b"{", b" ", b"\n", b"\t"):
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "error" in data:
            error = data["error"]
            text = error if isinstance(error, str) else orjson.dumps(error).decode()
    if not text:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())
    if len(text) > _MESSAGE_LIMIT_CHARS:
        text = text[: _MESSAGE_LIMIT_CHARS - 1] + "…"
    return text or f"HTTP {code}"


def _os_reason(exc: BaseException) -> str:
    """A short reason for a socket error (``Connection refused``), without errno noise."""
    errno = getattr(exc, "errno", None)
    if errno:
        return os.strerror(errno)
    return str(exc) or type(exc).__name__


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> str:
    """The address ``host`` resolves to, looked up once for the whole pool."""
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetError(f"cannot resolve {host}: {_os_reason(exc)}") from None
    return str(infos[0][4][0])


async def _open_all(connect: Callable[[], Awaitable[T]], count: int,
                    discard: Callable[[T], None]) -> tuple[list[T], BaseException | None]:
    """``count`` connections opened at once: all of them, or (after discarding the ones that
    opened) the first failure."""
    results = await asyncio.gather(*(connect() for _ in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    opened = [r for r in results if not isinstance(r, BaseException)]
    if failures:
        for conn in opened:
            discard(conn)
        return [], failures[0]
    return opened, None


class HttpTransport:
    """Sends prepared requests over a pool of keep-alive HTTP/1.1 connections to one target."""

    enforces_timeout = True
    """Every send ends by ``timeout_s`` on its own; the driver needs no guard of its own."""

    def __init__(self, base_url: str, *, connections: int = 16,
                 connect_timeout_s: float = 5.0) -> None:
        self.base_url = base_url
        (self._host, self._port, self._host_header, self._path_prefix,
         self.address) = target_setup(base_url, connections, connect_timeout_s)
        """``host:port`` of the target, as error messages name it."""
        self.connections = int(connections)
        self.connect_timeout_s = float(connect_timeout_s)
        self.connections_opened = 0
        """Connections opened so far, reconnects included."""
        self.pool_waits = 0
        """Sends that found every connection busy and had to wait for one."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_host = self._host
        # A token per pool slot: a connection, or None for a slot that must (re)connect.
        self._idle: collections.deque[HttpConnection | None] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[HttpConnection | None]] = (
            collections.deque())
        self._live: set[HttpConnection] = set()
        self._prefixes: dict[PreparedRequest, bytes] = {}
        self._started = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every connection now; raise ``TargetError`` naming the address if one fails."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._connect_host = await _resolve(self._loop, self._host, self._port)
        opened, failure = await _open_all(self._connect, self.connections,
                                          HttpConnection.close)
        if failure is not None:
            raise TargetError(f"cannot connect to {self.address}: {_os_reason(failure)}")
        self._idle.extend(opened)
        self._started = True

    async def close(self) -> None:
        """Close every connection; requests in flight end as ERROR ``closed``."""
        self._closed = True
        for conn in list(self._live):
            conn.abort("closed", "the transport was closed while the request was in flight")
        self._live.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._idle.clear()

    async def __aenter__(self) -> HttpTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the pool -------------------------------------------------------------------------

    async def _connect(self) -> HttpConnection:
        """One new connection, within the connect timeout (``TimeoutError`` otherwise)."""
        loop = self._loop
        assert loop is not None
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                lambda: HttpConnection(loop, self.address), self._connect_host, self._port)
        self.connections_opened += 1
        self._live.add(conn)
        return conn

    async def _wait_for_slot(self, deadline: float) -> HttpConnection | None | object:
        """Wait until a request hands its connection back, or ``_EXPIRED`` at the deadline."""
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[HttpConnection | None | object] = loop.create_future()
        self._waiters.append(waiter)  # type: ignore[arg-type]
        self.pool_waits += 1
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not _EXPIRED:
                self._release(waiter.result())  # type: ignore[arg-type]  # handed over as we left
            raise
        finally:
            timer.cancel()

    def _release(self, token: HttpConnection | None) -> None:
        """Give a slot back: to the first live waiter, else to the idle queue."""
        if token is not None and token.closed:
            self._live.discard(token)
            token = None
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(token)
                return
        if not self._closed:
            self._idle.append(token)

    def _prefix(self, request: PreparedRequest) -> bytes:
        """The cached request line and fixed headers of ``request``."""
        prefix = self._prefixes.get(request)
        if prefix is None:
            if request.method == "HEAD":  # its answer announces a body that never comes
                raise UsageError("HEAD requests are not supported by the HTTP transport")
            if len(self._prefixes) >= _PREFIX_CACHE_LIMIT:
                self._prefixes.clear()
            path = request.path if request.path.startswith("/") else "/" + request.path
            lines = [f"{request.method} {self._path_prefix}{path} HTTP/1.1\r\n",
                     _header_text("Host", self._host_header)]
            if request.body or request.method not in ("GET", "HEAD"):
                lines.append(f"Content-Length: {len(request.body)}\r\n")
            lines += [_header_text(name, value) for name, value in request.headers]
            prefix = "".join(lines).encode("latin-1")
            self._prefixes[request] = prefix
        return prefix

    # -- sending --------------------------------------------------------------------------

    async def send(self, request: PreparedRequest, *, request_id: str, traceparent: str,
                   timeout_s: float, keep_body: bool = False) -> Outcome:
        """Send one request and wait for its answer (or the timeout); never raises for failures."""
        if not self._started:
            raise RuntimeError("HttpTransport.send called before start()")
        prefix = self._prefix(request)
        if request_id and traceparent:
            text = f"x-request-id: {request_id}\r\ntraceparent: {traceparent}\r\n\r\n"
        else:
            text = (f"x-request-id: {request_id}\r\n" if request_id else "") + (
                f"traceparent: {traceparent}\r\n" if traceparent else "") + "\r\n"
        lines = bool(request_id) + bool(traceparent) + 1
        if text.count("\n") != lines or text.count("\r") != lines:
            raise UsageError("request ids and traceparent values cannot contain line breaks")
        tail = text.encode("latin-1")
        parts = (prefix, tail, request.body)
        request_bytes = len(prefix) + len(tail) + len(request.body)

        loop = self._loop
        assert loop is not None
        deadline = loop.time() + timeout_s
        got: HttpConnection | object | None
        if self._closed:
            return Outcome(Status.ERROR, request_bytes=request_bytes, done_ns=_now(),
                           error_kind="closed", error_message="the transport is closed")
        if self._idle:
            got = self._idle.popleft()
        else:
            got = await self._wait_for_slot(deadline)
            if got is _EXPIRED:
                return Outcome(Status.TIMEOUT, done_ns=_now(), request_bytes=request_bytes,
                               error_kind="timeout",
                               error_message=f"no free connection within {timeout_s:g}s "
                                             f"(all {self.connections} busy)")
        if self._closed:  # closed while this request waited for a connection
            return Outcome(Status.ERROR, request_bytes=request_bytes, done_ns=_now(),
                           error_kind="closed", error_message="the transport is closed")
        if isinstance(got, HttpConnection) and got.usable:
            conn = got
        else:
            fresh = await self._reconnect(got if isinstance(got, HttpConnection) else None,
                                          deadline, timeout_s)
            if isinstance(fresh, Outcome):
                fresh.request_bytes = request_bytes
                return fresh
            conn = fresh
        waiter = conn.exchange(parts, keep_body)
        # One timer per request (cheaper than asyncio.timeout); on expiry the connection
        # fails the exchange as "timeout" and closes, since a late answer would otherwise be
        # read as the next request's.
        timer = loop.call_at(deadline, conn.expire, waiter, timeout_s)
        try:
            await waiter
        except BaseException:
            # Cancelled by the driver: never leak the slot or a desynced stream.
            timer.cancel()
            conn.abort("cancelled", "the request was cancelled")
            self._release(None)
            raise
        timer.cancel()
        return self._outcome(conn, request_bytes, keep_body)

    async def _reconnect(self, token: HttpConnection | None, deadline: float,
                         timeout_s: float) -> HttpConnection | Outcome:
        """A new connection for a slot whose connection is gone, or the failure as an outcome."""
        if token is not None:
            self._live.discard(token)
        assert self._loop is not None
        try:
            async with asyncio.timeout_at(deadline) as scope:
                return await self._connect()
        except BaseException as exc:
            self._release(None)
            if isinstance(exc, TimeoutError) and scope.expired():
                return Outcome(Status.TIMEOUT, done_ns=_now(), error_kind="timeout",
                               error_message=f"connecting to {self.address} took more than "
                                             f"{timeout_s:g}s")
            if not isinstance(exc, OSError):
                raise
            kind = "timeout_connect" if isinstance(exc, TimeoutError) else "connect"
            return Outcome(Status.ERROR, done_ns=_now(), error_kind=kind,
                           error_message=f"cannot connect to {self.address}: {_os_reason(exc)}")

    def _outcome(self, conn: HttpConnection, request_bytes: int, keep_body: bool) -> Outcome:
        """Turn a finished exchange into an outcome and hand the connection back."""
        timing = parse_server_timing(conn.timing_values) if conn.timing_values else {}
        failure = conn.failure
        code = conn.status_code
        if failure is not None:
            status = Status.TIMEOUT if failure[0] == "timeout" else Status.ERROR
            outcome = Outcome(status, error_kind=failure[0], error_message=failure[1],
                              code=str(code) if code else "")
        elif 200 <= code < 300:
            outcome = Outcome(Status.OK, code=str(code),
                              body=b"".join(conn.chunks) if keep_body else None,
                              headers=conn.headers)
        else:
            body = b"".join(conn.chunks)
            outcome = Outcome(Status.ERROR, code=str(code), error_kind=f"http_{code}",
                              error_message=_error_message(code, body),
                              body=body if keep_body else None, headers=conn.headers)
        outcome.sent_ns = conn.sent_ns
        outcome.written_ns = conn.written_ns
        outcome.first_byte_ns = conn.first_byte_ns
        outcome.done_ns = conn.done_ns
        outcome.response_bytes = conn.response_bytes
        outcome.request_bytes = request_bytes
        outcome.server_timing_ms = timing
        conn.chunks = []
        if failure is not None or not conn.keep_alive:
            conn.close()
        self._release(conn)
        return outcome


def _now() -> int:
    return time.perf_counter_ns()


_EXPIRED = object()
"""What a pool waiter gets when its deadline passes before a connection is free."""


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)

"""The HTTP/2 transport: a few cleartext HTTP/2 connections, many concurrent streams on each.

``Http2Transport`` speaks HTTP/2 with prior knowledge (h2c, no upgrade dance) to one
``http://`` target, as load generators do against servers that speak it. It keeps
``connections`` connections; a request becomes a stream on the least busy connection that is
below the peer's ``SETTINGS_MAX_CONCURRENT_STREAMS``, and waits (before ``sent_ns``, so the
driver counts it as client queue) when every connection is full. A connection that has gone
(GOAWAY, reset, closed by the peer) is replaced lazily by the next request that needs it.

``timeout_s`` bounds the whole ``send`` call: waiting for a stream slot, reconnecting and the
exchange. A request that times out is reset (RST_STREAM CANCEL) and its connection keeps
serving the others -- unlike HTTP/1.1, a late answer cannot be mistaken for another's.

Error kinds: ``connect`` / ``timeout_connect`` (a replacement connection failed), ``timeout``,
``http_<code>`` (a non-2xx answer), ``h2_<ERROR_CODE>`` (the server reset the stream, e.g.
``h2_REFUSED_STREAM``), ``goaway`` (the server closed the connection with streams in flight),
``reset`` / ``eof`` (the connection was lost), ``protocol``, ``cancelled``, ``closed``.
"""

from __future__ import annotations

import asyncio
import collections
import time

import h2.exceptions

from modelcaliper.errors import TargetError
from modelcaliper.load.http import (
    _error_message,
    _header_text,
    _open_all,
    _os_reason,
    _resolve,
    target_setup,
)
from modelcaliper.load.http2_conn import H2Connection, H2Stream
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from modelcaliper.server.timing import parse_server_timing

__all__ = ["Http2Transport"]

_HEADER_CACHE_LIMIT = 4096  # distinct prepared requests remembered (a run reuses a small pool)
# Meaningless or forbidden in HTTP/2 (RFC 9113 §8.2.2); Host becomes :authority.
_DROPPED_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                              "upgrade", "host", "te", "content-length"})


class Http2Transport:
    """Sends prepared requests as streams over a few HTTP/2 cleartext connections."""

    enforces_timeout = True
    """Every send ends by ``timeout_s`` on its own; the driver needs no guard of its own."""

    def __init__(self, base_url: str, *, connections: int = 1,
                 connect_timeout_s: float = 5.0) -> None:
        self.base_url = base_url
        (self._host, self._port, self._authority, self._path_prefix,
         self.address) = target_setup(base_url, connections, connect_timeout_s)
        """``host:port`` of the target, as error messages name it."""
        self.connections = int(connections)
        self.connect_timeout_s = float(connect_timeout_s)
        self.connections_opened = 0
        """Connections opened so far, reconnects included."""
        self.stream_waits = 0
        """Sends that found every connection at its stream limit and had to wait."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_host = self._host
        self._slots: list[H2Connection | None] = []
        self._connecting: set[int] = set()  # slots being reconnected right now
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._headers: dict[PreparedRequest, list[tuple[bytes, bytes]]] = {}
        self._started = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every connection and wait for its HTTP/2 settings; ``TargetError`` if one fails."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._connect_host = await _resolve(self._loop, self._host, self._port)
        opened, failure = await _open_all(self._connect, self.connections,
                                          lambda conn: conn.abort("closed", "start failed"))
        if failure is not None:
            reason = (f"no HTTP/2 settings within {self.connect_timeout_s:g}s"
                      if isinstance(failure, TimeoutError) else _os_reason(failure))
            raise TargetError(f"cannot connect to {self.address} over HTTP/2: {reason}")
        self._slots = list(opened)
        self._started = True

    async def close(self) -> None:
        """Close every connection; requests in flight end as ERROR ``closed``."""
        self._closed = True
        for conn in self._slots:
            if conn is not None:
                conn.close()
        self._slots = []
        self._wake_all()

    async def __aenter__(self) -> Http2Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections ----------------------------------------------------------------------

    async def _connect(self) -> H2Connection:
        """One new connection whose peer sent its settings, within the connect timeout."""
        loop = self._loop
        assert loop is not None
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                lambda: H2Connection(loop, self.address, self._wake),
                self._connect_host, self._port)
            try:
                await conn.ready
            except BaseException:
                conn.abort("closed", "no HTTP/2 settings")
                raise
        self.connections_opened += 1
        return conn

    def _wake(self) -> None:
        """A stream slot may have freed up: let the first waiter look again."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _pick(self) -> H2Connection | int | None:
        """The least busy connection with room, else a dead slot to reconnect, else None."""
        best: H2Connection | None = None
        dead = None
        for index, conn in enumerate(self._slots):
            if conn is None or conn.closed:
                if dead is None and index not in self._connecting:
                    dead = index
            elif conn.has_room and (best is None or len(conn.streams) < len(best.streams)):
                best = conn
        return best if best is not None else dead

    async def _acquire(self, deadline: float, timeout_s: float) -> H2Connection | Outcome:
        """A connection with a free stream slot, waiting or reconnecting; or the failure."""
        loop = self._loop
        assert loop is not None
        while True:
            if self._closed:
                return Outcome(Status.ERROR, done_ns=_now(), error_kind="closed",
                               error_message="the transport was closed")
            picked = self._pick()
            if isinstance(picked, H2Connection):
                return picked
            if isinstance(picked, int):
                return await self._reconnect(picked, deadline, timeout_s)
            if loop.time() >= deadline:
                return _timeout(f"no free HTTP/2 stream on {self.address} within "
                                f"{timeout_s:g}s")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            self.stream_waits += 1
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on a wake-up we can no longer use
                raise
            finally:
                timer.cancel()

    async def _reconnect(self, index: int, deadline: float,
                         timeout_s: float) -> H2Connection | Outcome:
        """Replace the connection of slot ``index``, or the failure as an outcome."""
        self._connecting.add(index)
        try:
            async with asyncio.timeout_at(deadline) as scope:
                conn = await self._connect()
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and scope.expired():
                return _timeout(f"connecting to {self.address} took more than {timeout_s:g}s")
            kind = "timeout_connect" if isinstance(exc, TimeoutError) else "connect"
            return Outcome(Status.ERROR, done_ns=_now(), error_kind=kind,
                           error_message=f"cannot connect to {self.address}: {_os_reason(exc)}")
        finally:
            self._connecting.discard(index)
            self._wake()
        if self._closed:
            conn.close()
            return Outcome(Status.ERROR, done_ns=_now(), error_kind="closed",
                           error_message="the transport was closed")
        self._slots[index] = conn
        self._wake_all()  # a fresh connection has room for many
        return conn

    def _header_list(self, request: PreparedRequest) -> list[tuple[bytes, bytes]]:
        """The cached pseudo-headers and fixed headers of ``request``."""
        headers = self._headers.get(request)
        if headers is None:
            if len(self._headers) >= _HEADER_CACHE_LIMIT:
                self._headers.clear()
            path = request.path if request.path.startswith("/") else "/" + request.path
            pairs = [(":method", request.method), (":scheme", "http"),
                     (":authority", self._authority), (":path", self._path_prefix + path)]
            if request.body or request.method not in ("GET", "HEAD"):
                pairs.append(("content-length", str(len(request.body))))
            for name, value in request.headers:
                _header_text(name, value)  # the same refusal of line breaks as HTTP/1.1
                if name.lower() not in _DROPPED_HEADERS:
                    pairs.append((name.lower(), value))
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
            self._headers[request] = headers
        return headers

    # -- sending --------------------------------------------------------------------------

    async def send(self, request: PreparedRequest, *, request_id: str, traceparent: str,
                   timeout_s: float, keep_body: bool = False) -> Outcome:
        """Send one request and wait for its answer (or the timeout); never raises for failures."""
        if not self._started:
            raise RuntimeError("Http2Transport.send before start()")
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + timeout_s
        headers = self._header_list(request) + [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"traceparent", traceparent.encode("latin-1"))]
        got = await self._acquire(deadline, timeout_s)
        if isinstance(got, Outcome):
            return got
        conn = got
        try:
            stream = conn.open(headers, request.body, keep_body)
        except h2.exceptions.H2Error as exc:
            conn.abort("protocol", f"cannot open an HTTP/2 stream to {self.address}: {exc}")
            return Outcome(Status.ERROR, done_ns=_now(), error_kind="protocol",
                           error_message=f"cannot open an HTTP/2 stream to {self.address}: "
                                         f"{exc}")
        # One timer per request; on expiry the stream is reset, the connection stays.
        timer = loop.call_at(deadline, conn.expire, stream, timeout_s)
        try:
            await stream.waiter
        except BaseException:
            timer.cancel()
            conn.cancel(stream, "cancelled", "the request was cancelled")
            raise
        timer.cancel()
        return _outcome(stream)


def _outcome(stream: H2Stream) -> Outcome:
    """Turn a finished stream into an outcome."""
    code = stream.code
    failure = stream.failure
    if failure is not None:
        status = Status.TIMEOUT if failure[0] == "timeout" else Status.ERROR
        outcome = Outcome(status, error_kind=failure[0], error_message=failure[1],
                          code=str(code) if code else "")
    elif 200 <= code < 300:
        outcome = Outcome(Status.OK, code=str(code),
                          body=b"".join(stream.chunks) if stream.keep_body else None,
                          headers=stream.headers)
    else:
        body = b"".join(stream.chunks)
        outcome = Outcome(Status.ERROR, code=str(code), error_kind=f"http_{code}",
                          error_message=_error_message(code, body),
                          body=body if stream.keep_body else None, headers=stream.headers)
    outcome.sent_ns = stream.sent_ns
    outcome.written_ns = stream.written_ns
    outcome.first_byte_ns = stream.first_byte_ns
    outcome.done_ns = stream.done_ns
    outcome.response_bytes = stream.response_bytes
    outcome.request_bytes = stream.request_bytes
    if stream.timing_values:
        outcome.server_timing_ms = parse_server_timing(stream.timing_values)
    return outcome


def _timeout(message: str) -> Outcome:
    return Outcome(Status.TIMEOUT, done_ns=_now(), error_kind="timeout", error_message=message)


def _now() -> int:
    return time.perf_counter_ns()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)

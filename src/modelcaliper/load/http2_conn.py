"""One HTTP/2 cleartext client connection: an ``asyncio.Protocol`` driving ``h2``'s state machine.

A connection multiplexes many streams; each ``H2Stream`` is one request and its answer, with a
future that resolves (never with an exception) when the answer is complete or the stream has
failed. The connection opens with the client preface and raises both its receive windows (the
connection's and every stream's) so that answers are never throttled by us; request bodies
larger than the peer's windows are sent as the peer's WINDOW_UPDATEs allow.

Where each timestamp is taken, and why:

* ``sent_ns`` -- just before the stream's first frame (HEADERS) is handed to the socket; HPACK
  encoding happens before it, as client work.
* ``written_ns`` -- when the stream's last frame was handed to the kernel: after the last DATA
  frame the flow-control windows allowed, and after the user-space write buffer drained (the
  buffer limits are zero, as in the HTTP/1.1 connection).
* ``first_byte_ns`` -- when the bytes carrying the response HEADERS arrived.
* ``done_ns`` -- when the bytes carrying the stream's END_STREAM arrived.

``request_bytes`` and ``response_bytes`` count the stream's frames on the wire (9-byte frame
headers included); connection-level frames (SETTINGS, PING, WINDOW_UPDATE on stream 0) belong
to no request.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from modelcaliper.load.http_conn import ERROR_BODY_LIMIT_BYTES

__all__ = ["RECEIVE_WINDOW_BYTES", "H2Connection", "H2Stream"]

RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024
"""Our receive window, per stream and for the whole connection."""

_perf_ns = time.perf_counter_ns
_MAX_WINDOW = 2**31 - 1


class H2Stream:
    """One request on a connection: its body still to send, what came back, its timestamps."""

    __slots__ = ("body", "body_offset", "chunks", "code", "done", "done_ns", "failure",
                 "first_byte_ns", "headers", "keep_body", "request_bytes", "response_bytes",
                 "sent_ns", "stream_id", "timing_values", "waiter", "written_ns", "body_bytes")

    def __init__(self, stream_id: int, body: bytes, keep_body: bool,
                 waiter: asyncio.Future[None]) -> None:
        self.stream_id = stream_id
        self.body = body
        self.body_offset = 0
        self.keep_body = keep_body
        self.waiter = waiter
        self.done = False
        self.sent_ns = self.written_ns = self.first_byte_ns = self.done_ns = 0
        self.request_bytes = self.response_bytes = self.body_bytes = 0
        self.code = 0
        self.headers: dict[str, str] | None = {} if keep_body else None
        self.timing_values: list[str] = []
        self.chunks: list[bytes] = []
        self.failure: tuple[str, str] | None = None


class H2Connection(asyncio.Protocol):
    """A client connection speaking HTTP/2 with prior knowledge (h2c) through ``h2``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str,
                 on_capacity: Callable[[], None]) -> None:
        self._loop = loop
        self.address = address
        self._on_capacity = on_capacity
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.streams: dict[int, H2Stream] = {}
        self.ready: asyncio.Future[None] = loop.create_future()
        """Resolves once the peer's first SETTINGS arrived (it speaks HTTP/2)."""
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._blocked: dict[int, H2Stream] = {}  # streams with body left to send
        self._draining: list[H2Stream] = []  # fully handed over, waiting for the buffer
        self._write_paused = False
        self._frame_head = b""  # a partial 9-byte frame header from the last read
        self._frame_left = 0  # payload bytes of the current frame still to come
        self._frame_stream: H2Stream | None = None

    # -- capacity -------------------------------------------------------------------------

    @property
    def max_streams(self) -> int:
        """Concurrent streams the peer allows us."""
        return int(self._h2.remote_settings.max_concurrent_streams)

    @property
    def has_room(self) -> bool:
        """Usable, and below the peer's concurrent-stream limit."""
        return (not self.closed and self.ready.done() and len(self.streams) < self.max_streams
                and self._h2.highest_outbound_stream_id < _MAX_WINDOW - 2)

    # -- streams --------------------------------------------------------------------------

    def open(self, headers: list[tuple[bytes, bytes]], body: bytes,
             keep_body: bool) -> H2Stream:
        """Start one request: HEADERS, then as much DATA as the windows allow."""
        conn = self._h2
        stream = H2Stream(conn.get_next_available_stream_id(), body, keep_body,
                          self._loop.create_future())
        self.streams[stream.stream_id] = stream
        conn.send_headers(stream.stream_id, headers, end_stream=not body)
        if body:
            self._send_body(stream)
        data = conn.data_to_send()
        stream.request_bytes += len(data)
        assert self.transport is not None
        stream.sent_ns = _perf_ns()
        self.transport.write(data)
        self._mark_written(stream)
        return stream

    def _send_body(self, stream: H2Stream) -> int:
        """Queue as much of the body as the windows allow as DATA frames; the bytes queued."""
        conn, sid, body = self._h2, stream.stream_id, stream.body
        frame_bytes = conn.max_outbound_frame_size
        queued = 0
        while stream.body_offset < len(body):
            room = min(conn.local_flow_control_window(sid), frame_bytes)
            if room <= 0:
                self._blocked[sid] = stream
                return queued
            start = stream.body_offset
            chunk = body[start : start + room]
            stream.body_offset = start + len(chunk)
            conn.send_data(sid, chunk, end_stream=stream.body_offset == len(body))
            stream.request_bytes += 9 + len(chunk)
            queued += 9 + len(chunk)
        self._blocked.pop(sid, None)
        return queued

    def _mark_written(self, stream: H2Stream) -> None:
        if stream.stream_id in self._blocked or stream.written_ns:
            return
        if self._write_paused:
            self._draining.append(stream)
        else:
            stream.written_ns = _perf_ns()

    def cancel(self, stream: H2Stream, kind: str, message: str) -> None:
        """Fail ``stream`` and reset it (RST_STREAM CANCEL); the connection stays up."""
        if stream.done:
            return
        self._fail(stream, kind, message)
        if not self.closed:
            try:
                self._h2.reset_stream(stream.stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.H2Error:
                pass  # already closed on the protocol level
            self._flush()

    def expire(self, stream: H2Stream, timeout_s: float) -> None:
        """Timer callback: fail ``stream`` as a timeout if it is still running."""
        if not stream.done:
            self.cancel(stream, "timeout",
                        f"no complete response from {self.address} within {timeout_s:g}s")

    def finish(self, stream: H2Stream) -> None:
        """Complete ``stream`` (its outcome is ready) and give its slot back."""
        if not stream.done:
            stream.done = True
            if not stream.done_ns:
                stream.done_ns = _perf_ns()
            self.streams.pop(stream.stream_id, None)
            self._blocked.pop(stream.stream_id, None)
            if not stream.waiter.done():
                stream.waiter.set_result(None)
            self._on_capacity()

    def _fail(self, stream: H2Stream, kind: str, message: str) -> None:
        stream.failure = (kind, message)
        self.finish(stream)

    def abort(self, kind: str, message: str) -> None:
        """Fail every stream in flight and drop the connection."""
        self.closed = True
        for stream in list(self.streams.values()):
            self._fail(stream, kind, message)
        if self.transport is not None:
            self.transport.abort()
        self._on_capacity()

    def close(self) -> None:
        """Say goodbye (GOAWAY) and close after flushing; streams in flight end as ``closed``."""
        for stream in list(self.streams.values()):
            self._fail(stream, "closed", "the transport was closed while the request was in "
                                         "flight")
        if not self.closed and self.transport is not None:
            try:
                self._h2.close_connection()
                self._flush()
            except h2.exceptions.H2Error:
                pass
            self.transport.close()
        self.closed = True

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the preface with our settings and raise the connection's receive window."""
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=0, low=0)
        conn = self._h2
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW_BYTES,
        })
        conn.initiate_connection()
        conn.increment_flow_control_window(RECEIVE_WINDOW_BYTES - 65535)
        self._flush()

    def pause_writing(self) -> None:
        """Part of what was written is still buffered in user space."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The buffer drained into the kernel: streams handed over are written."""
        self._write_paused = False
        now = _perf_ns()
        for stream in self._draining:
            if not stream.written_ns:
                stream.written_ns = now
        self._draining.clear()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to ``h2`` and act on its events."""
        now = _perf_ns()
        self._meter(data)
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._protocol_error(exc)
            return
        for event in events:
            self._event(event, now)
        if self._blocked:
            for stream in list(self._blocked.values()):
                self._send_body(stream)
                self._flush()
                self._mark_written(stream)
        self._flush()

    def _protocol_error(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(
                f"{self.address} does not speak HTTP/2 with prior knowledge (h2c): {exc}"))
        self.abort("protocol", f"HTTP/2 protocol error from {self.address}: {exc}")

    def _event(self, event: h2.events.Event, now: int) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.first_byte_ns = now
            if not stream.written_ns:
                stream.written_ns = now
            self._headers(stream, event.headers, status=True)
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                self._body(stream, event.data)
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            self._headers(stream, event.headers, status=False)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.done_ns = now
            self.finish(stream)
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            code = _code_name(event.error_code)
            self._fail(stream, f"h2_{code}", f"{self.address} reset the stream ({code})")
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.ready.done():
                self.ready.set_result(None)
            self._on_capacity()
        elif isinstance(event, h2.events.ConnectionTerminated):
            code = _code_name(event.error_code)
            self.closed = True  # no new streams; the ones in flight cannot finish in h2 now
            for open_stream in list(self.streams.values()):
                self._fail(open_stream, "goaway",
                           f"{self.address} closed the connection (GOAWAY {code})")
            if self.transport is not None:
                self.transport.close()
            self._on_capacity()

    def _headers(self, stream: H2Stream, headers: list[tuple[bytes, bytes]],
                 status: bool) -> None:
        for name, value in headers:
            if status and name == b":status":
                stream.code = int(value)
                continue
            if name == b"server-timing":
                stream.timing_values.append(value.decode("latin-1"))
            if stream.headers is not None and not name.startswith(b":"):
                key, text = name.decode("latin-1"), value.decode("latin-1")
                old = stream.headers.get(key)
                stream.headers[key] = f"{old}, {text}" if old is not None else text

    def _body(self, stream: H2Stream, data: bytes) -> None:
        stream.body_bytes += len(data)
        if stream.keep_body:
            stream.chunks.append(data)
        elif not 200 <= stream.code < 300 and (stream.body_bytes - len(data)
                                               < ERROR_BODY_LIMIT_BYTES):
            stream.chunks.append(data)

    def _meter(self, data: bytes) -> None:
        """Attribute the received bytes, frame by frame, to the streams they belong to."""
        pos, size = 0, len(data)
        while pos < size:
            if self._frame_left:
                take = min(self._frame_left, size - pos)
                self._frame_left -= take
                if self._frame_stream is not None:
                    self._frame_stream.response_bytes += take
                pos += take
                continue
            need = 9 - len(self._frame_head)
            self._frame_head += data[pos : pos + need]
            pos += need
            if len(self._frame_head) < 9:
                return
            head, self._frame_head = self._frame_head, b""
            self._frame_left = int.from_bytes(head[:3], "big")
            sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            self._frame_stream = self.streams.get(sid) if sid else None
            if self._frame_stream is not None:
                self._frame_stream.response_bytes += 9

    def eof_received(self) -> bool:
        """The peer closed its side: let the transport close (``connection_lost`` follows)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every stream in flight."""
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(
                f"{self.address} closed the connection before its HTTP/2 settings"))
        if exc is None:
            kind, message = "eof", f"{self.address} closed the connection"
        elif isinstance(exc, ConnectionResetError):
            kind, message = "reset", f"connection reset by {self.address}"
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            kind, message = "reset", f"connection to {self.address} lost: {reason}"
        for stream in list(self.streams.values()):
            self._fail(stream, kind, message)
        self._on_capacity()


def _code_name(code: object) -> str:
    """``REFUSED_STREAM`` for an HTTP/2 error code, or its number when unknown."""
    name = getattr(code, "name", None)
    return str(name) if name else str(code)

"""One keep-alive HTTP/1.1 client connection: an ``asyncio.Protocol`` fed to ``httptools``.

A connection carries one exchange at a time (no pipelining). ``exchange`` writes a request and
returns a future that resolves (never with an exception) when the response is complete or the
exchange has failed; the caller then reads the timestamps, status, headers of interest and
body from the connection's fields before handing it to the next request.

Where each timestamp is taken, and why:

* ``sent_ns`` -- just before ``transport.write``: the request leaves our hands here.
* ``written_ns`` -- when the last request byte was handed to the kernel. ``transport.write``
  first tries to send directly and buffers in user space only what the socket refused; the
  write-buffer limits are set to zero so that any such leftover pauses the protocol, and the
  matching ``resume_writing`` (buffer drained into the kernel) stamps ``written_ns``. It says
  nothing about the peer having read the bytes. If the server starts answering before the
  buffer drained (an early error), ``written_ns`` is the first response byte's time.
* ``first_byte_ns`` -- the first ``data_received`` of the response (bytes are in our process).
* ``done_ns`` -- ``on_message_complete`` (or, for a body delimited by closing the connection,
  the close).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import cast

import httptools

__all__ = ["ERROR_BODY_LIMIT_BYTES", "HttpConnection"]

ERROR_BODY_LIMIT_BYTES = 64 * 1024
"""How much of a non-2xx response body is kept to find its error message."""

_perf_ns = time.perf_counter_ns


class HttpConnection(asyncio.Protocol):
    """A client connection that parses responses with ``httptools.HttpResponseParser``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str) -> None:
        self._loop = loop
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests_sent = 0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._keep_body = False
        self._keep_error_body = False
        self._until_eof = False
        self._headers_done = False
        self._framed = False
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        """Clear the per-exchange fields before a new request."""
        self.sent_ns = 0
        self.written_ns = 0
        self.first_byte_ns = 0
        self.done_ns = 0
        self.response_bytes = 0
        self.status_code = 0
        self.keep_alive = True
        self.chunks: list[bytes] = []
        self.body_bytes = 0
        self.timing_values: list[str] = []
        self.headers: dict[str, str] | None = None
        self.failure: tuple[str, str] | None = None
        self._headers_done = False
        self._framed = False
        self._until_eof = False

    # -- driving an exchange -------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open for a new request: not closed, nor closing without our having heard yet."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def exchange(self, parts: Sequence[bytes], keep_body: bool) -> asyncio.Future[None]:
        """Write one request (``parts`` concatenated) and return the future of its response."""
        assert self.transport is not None and self._waiter is None
        self._reset_exchange()
        self._keep_body = keep_body
        if keep_body:
            self.headers = {}
        self._waiter = waiter = self._loop.create_future()
        self.requests_sent += 1
        transport = self.transport
        self.sent_ns = _perf_ns()
        if len(parts[-1]) <= 16384:
            transport.write(b"".join(parts))
        else:
            transport.writelines(parts)  # large bodies: no copy, one vectored write
        if not self._write_paused and not self.written_ns:
            self.written_ns = _perf_ns()
        return waiter

    def abort(self, kind: str, message: str) -> None:
        """Fail the exchange in flight (if any) and drop the connection without a goodbye."""
        self._finish_failure(kind, message)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def expire(self, waiter: asyncio.Future[None], timeout_s: float) -> None:
        """Timer callback: fail the exchange ``waiter`` as a timeout if it is still running."""
        if waiter is self._waiter and not waiter.done():
            self.abort("timeout", f"no complete response from {self.address} "
                                  f"within {timeout_s:g}s")

    def close(self) -> None:
        """Close the connection politely (after flushing what is buffered)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish_failure(self, kind: str, message: str) -> None:
        if self._waiter is None:
            return
        if not self.done_ns:
            self.done_ns = _perf_ns()
        self.failure = (kind, message)
        self.keep_alive = False
        self._finish()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport, disable Nagle, and ask to be told when writes are buffered."""
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=0, low=0)

    def pause_writing(self) -> None:
        """Part of the request is still buffered in user space."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The buffer drained into the kernel: the whole request has been written."""
        self._write_paused = False
        if self._waiter is not None and not self.written_ns:
            self.written_ns = _perf_ns()

    def data_received(self, data: bytes) -> None:
        """Feed response bytes to the parser; bytes with no request in flight are an error."""
        if self._waiter is None:
            # Nothing was asked: a late answer to an abandoned request, or garbage. Either way
            # the stream can no longer be trusted for the next request.
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        if not self.first_byte_ns:
            self.first_byte_ns = now = _perf_ns()
            if not self.written_ns:
                self.written_ns = now
        self.response_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.abort("protocol", f"{self.address} switched protocols, which is not supported")
        except httptools.HttpParserError as exc:
            if self._waiter is None:  # extra bytes after the complete answer
                self.closed = True
                if self.transport is not None:
                    self.transport.abort()
                return
            self.abort("protocol", f"malformed HTTP response from {self.address}: {exc}")

    def eof_received(self) -> bool:
        """The peer closed its side: let the transport close (``connection_lost`` follows)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Complete a close-delimited body, or fail the exchange in flight."""
        self.closed = True
        if self._waiter is None:
            return
        if exc is None and self._until_eof and self._headers_done:
            self.done_ns = _perf_ns()
            self.keep_alive = False
            self._finish()
            return
        if exc is None:
            got = f"after {self.response_bytes} response bytes" if self.response_bytes else (
                "before any response byte")
            self._finish_failure("eof", f"{self.address} closed the connection {got}")
        elif isinstance(exc, ConnectionResetError):
            self._finish_failure("reset", f"connection reset by {self.address}")
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            self._finish_failure("reset", f"connection to {self.address} lost: {reason}")

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        """Refuse a response nobody asked for (raising stops the parser; see data_received)."""
        if self._waiter is None:
            raise httptools.HttpParserError("a response arrived with no request in flight")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Note Server-Timing and the body framing; keep every header only with the body."""
        if self.headers is not None:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        if len(name) == 13 and name.lower() == b"server-timing":
            self.timing_values.append(value.decode("latin-1"))
        elif len(name) in (14, 17) and name.lower() in (b"content-length",
                                                        b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        """Note the status; decide whether the body is kept and how it ends."""
        code = self._parser.get_status_code()
        self.status_code = code
        self._headers_done = True
        self._keep_error_body = not 200 <= code < 300
        self._until_eof = not self._framed and code >= 200 and code not in (204, 304)

    def on_body(self, body: bytes) -> None:
        """Count body bytes; keep them only when asked to, or (bounded) for an error."""
        self.body_bytes += len(body)
        if self._keep_body:
            self.chunks.append(body)
        elif self._keep_error_body and self.body_bytes - len(body) < ERROR_BODY_LIMIT_BYTES:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        """Resolve the exchange, or skip an interim 1xx answer and keep waiting."""
        code = self.status_code
        if 100 <= code < 200:
            self._headers_done = False
            self._framed = False
            self.timing_values.clear()
            if self.headers is not None:
                self.headers.clear()
            return
        self.done_ns = _perf_ns()
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()

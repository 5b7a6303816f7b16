"""A tiny scripted HTTP/1.1 server on 127.0.0.1, run in its own thread, for transport tests.

Each request is captured byte for byte (head and body, with its connection number) and answered
by a ``Reply`` the test's script returns: a status, headers and body, optionally after a delay,
chunked, close-delimited, cut short by a reset or an orderly close, or followed by a stray
second answer.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Captured", "Reply", "ScriptedServer", "free_port"]


@dataclass(frozen=True)
class Captured:
    """One request as the server read it."""

    connection: int
    index: int  # position among all requests the server received
    head: bytes  # request line and headers, through the blank line
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive), if any."""
        for line in self.head.split(b"\r\n")[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


@dataclass(frozen=True)
class Reply:
    """How to answer one request."""

    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    chunked: bool = False
    close_delimited: bool = False  # no length: the body ends when the server closes
    connection_close: bool = False  # send "Connection: close" and close after the answer
    reset_after_bytes: int | None = None  # send this much of the answer, then a TCP reset
    eof_after_bytes: int | None = None  # send this much of the answer, then close cleanly
    twice: bool = False  # send the answer a second time, unasked
    echo: bool = False  # the body is the request's body


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _render(reply: Reply, request_body: bytes) -> bytes:
    body = request_body if reply.echo else reply.body
    lines = [f"HTTP/1.1 {reply.status} Whatever"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if reply.chunked:
        lines.append("Transfer-Encoding: chunked")
    elif not reply.close_delimited:
        lines.append(f"Content-Length: {len(body)}")
    if reply.connection_close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if not reply.chunked:
        return head + body
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return head + framed + b"0\r\n\r\n"


class ScriptedServer:
    """Serves ``script(captured) -> Reply`` on 127.0.0.1 from a background event loop."""

    def __init__(self, script: Callable[[Captured], Reply] | None = None) -> None:
        self.script = script or (lambda captured: Reply())
        self.requests: list[Captured] = []
        self.connections_accepted = 0
        self.connections_closed = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = started.result(timeout=5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop_listening(self) -> None:
        """Close the listening socket and every open connection."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _shutdown(self) -> None:
        await self._stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        connection = self.connections_accepted
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                captured = Captured(connection, len(self.requests), head, body)
                self.requests.append(captured)
                reply = self.script(captured)
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                data = _render(reply, body)
                cut = reply.reset_after_bytes if reply.reset_after_bytes is not None else (
                    reply.eof_after_bytes)
                if cut is not None:
                    writer.write(data[:cut])
                    await writer.drain()
                    await asyncio.sleep(0.05)  # let the client read the part before the cut
                    if reply.reset_after_bytes is not None:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        writer.transport.abort()
                    else:
                        writer.close()
                    return
                writer.write(data + (data if reply.twice else b""))
                await writer.drain()
                if reply.close_delimited or reply.connection_close:
                    writer.close()
                    return
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            self.connections_closed += 1

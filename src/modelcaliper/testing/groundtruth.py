"""A ground-truth HTTP server: every request's service time is drawn from a known, seeded law.

It exists to prove the load engine honest. It answers any ``POST`` with ``200``, a small JSON
body and ``Server-Timing: total;dur=…, service;dur=…, stall;dur=…`` after holding the request
for a service time drawn, in arrival order, from a seeded RNG (``constant:5ms``,
``exponential:mean=5ms``, ``lognormal:median=5ms,sigma=0.5``). The hold is a timer, not CPU
work, so concurrent requests do not slow each other down (an infinite-server queue). With
``workers`` = c > 0 it is a FIFO queue of c servers instead: a request's service starts when
it has arrived and one of the c is free (the earliest), so with a constant service time S and
one worker the capacity is exactly 1 / S requests per second.

Stall mode freezes the whole server for ``stall_s`` at the end of every ``stall_every_s``
period: stall k covers ``[k·P − S, k·P)`` after the epoch (the start or the last reset), k ≥ 1,
so the first ``P − S`` seconds are calm and any run of a whole number of periods contains
exactly that many stalls. The freeze is modelled exactly, as a stopped process would behave:

* a request that arrives during a stall is read when the stall ends, and its service starts
  then: ``start = a`` if ``a`` is outside every stall, else the end of that stall;
* a response that would be sent during a stall is sent when the stall ends:
  ``release = start + service``, moved to the end of the stall it falls in, if any.

The server is not actually frozen: it keeps reading so that it can timestamp every request's
true arrival, and only holds the responses. Per request it records the arrival time (when its
last byte was read), the drawn service time, the planned release and the moment the response
was handed to the socket (``done_ns``; timers fire a little late, and on a busy machine the
process may be scheduled late too, so ``done_ns − arrival_ns`` is the service time actually
applied: the truth a client can see). Both timestamps are causal bounds: a client sent the
request before ``arrival_ns`` and cannot have the answer before ``done_ns``. All times are
absolute ``time.perf_counter_ns()`` values, which on Linux is the system-wide monotonic clock,
so they compare directly with a client's timestamps in another process. ``GET /stats`` returns
them as JSON; ``DELETE /stats`` clears them, reseeds the RNG and restarts the stall clock.

Run it in-process (``GroundTruthServer``, a thread with its own event loop), in a subprocess
(``GroundTruthProcess``, preferred for timing: no shared GIL with the client), or as
``python -m modelcaliper.testing.groundtruth --service constant:5ms --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import deque
from pathlib import Path
from typing import Any

import httptools
import numpy as np

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.testing.truth import GroundTruthRecords, ServiceTime, Stalls
from modelcaliper.units import parse_duration

__all__ = [
    "GroundTruthProcess",
    "GroundTruthRecords",
    "GroundTruthServer",
    "ServiceTime",
    "Stalls",
    "main",
]

HOST = "127.0.0.1"
DEFAULT_MAX_RECORDS = 2_000_000
"""Requests recorded per epoch (40 bytes each); later ones are answered and only counted."""


class _Core:
    """The server's state on its event loop: RNG, stall clock and the records."""

    def __init__(self, service: ServiceTime, stalls: Stalls, seed: int, max_records: int,
                 workers: int = 0) -> None:
        if workers < 0:
            raise UsageError(f"--workers must be ≥ 0 (0 = unbounded), got {workers}")
        self.service, self.stalls, self.seed, self.max_records = service, stalls, seed, max_records
        self.workers = workers
        self.connections: set[_Connection] = set()
        self.reset()

    def reset(self) -> int:
        """Clear the records, reseed the RNG and restart the stall clock; the new epoch."""
        self.rng = np.random.default_rng(self.seed)
        self.epoch_ns = time.perf_counter_ns()
        self.columns = [array("q") for _ in range(4)]  # arrival, service, release, done
        self.request_ids: list[str] = []
        self.unrecorded = 0
        self.free_ns = [0] * self.workers  # when each worker is free, since the epoch (a heap)
        return self.epoch_ns

    def admit(self, arrival_ns: int, request_id: str) -> tuple[int, int, int]:
        """Draw a service time for a request; ``(record index or -1, service_ns, release_ns)``."""
        service_ns = round(self.service.draw_s(self.rng) * 1e9)
        begin_ns = arrival_ns - self.epoch_ns
        if self.workers:  # FIFO: wait for the worker that frees up first
            begin_ns = max(begin_ns, heapq.heappop(self.free_ns))
        release_ns = self.epoch_ns + self.stalls.release_ns(begin_ns, service_ns)
        if self.workers:
            heapq.heappush(self.free_ns, release_ns - self.epoch_ns)
        if len(self.request_ids) >= self.max_records:
            self.unrecorded += 1
            return -1, service_ns, release_ns
        for column, value in zip(self.columns, (arrival_ns, service_ns, release_ns, 0),
                                 strict=True):
            column.append(value)
        self.request_ids.append(request_id)
        return len(self.request_ids) - 1, service_ns, release_ns

    def snapshot(self) -> GroundTruthRecords:
        """A copy of the records so far."""
        arrival, service, release, done = (np.frombuffer(c, np.int64).copy() for c in self.columns)
        return GroundTruthRecords(self.epoch_ns, arrival, service, release, done,
                                  list(self.request_ids), self.unrecorded)


def _response(status: bytes, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    """An HTTP/1.1 response with a JSON body."""
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + (b"Connection: close\r\n" if close
                                                           else b"") + b"\r\n" + body)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests with httptools, answers them in order."""

    def __init__(self, core: _Core) -> None:
        self.core = core
        self.parser = httptools.HttpRequestParser(self)
        # [response bytes or None, close?, record index or -1, its records' done column],
        # in request order (the column, not the index alone: a reset may replace the records)
        self.pending: deque[list[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.now_ns = 0
        self.url = b""
        self.request_id = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.core.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.core.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.now_ns = time.perf_counter_ns()  # arrival = when the last byte was read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._queue([_response(b"400 Bad Request", b'{"error":"malformed HTTP"}',
                                   close=True), True, -1, None])

    def on_message_begin(self) -> None:
        self.url, self.request_id = b"", ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-request-id":
            self.request_id = value.decode("latin-1")

    def on_message_complete(self) -> None:
        method, close = self.parser.get_method(), not self.parser.should_keep_alive()
        if method == b"POST":
            index, service_ns, release_ns = self.core.admit(self.now_ns, self.request_id)
            slot: list[Any] = [None, close, index, self.core.columns[3]]
            self.pending.append(slot)
            delay_s = max(0.0, (release_ns - time.perf_counter_ns()) / 1e9)
            asyncio.get_running_loop().call_later(
                delay_s, self._answer, slot, index, self.now_ns, service_ns, release_ns)
            return
        path = self.url.split(b"?")[0]
        if path == b"/stats" and method in (b"GET", b"DELETE"):
            doc = ({"epoch_ns": self.core.reset()} if method == b"DELETE"
                   else self.core.snapshot().to_json())
            body = json.dumps(doc, separators=(",", ":")).encode()
            self._queue([_response(b"200 OK", body, close=close), close, -1, None])
        else:
            self._queue([_response(b"405 Method Not Allowed",
                                   b'{"error":"POST to be served, GET or DELETE /stats"}',
                                   close=close), close, -1, None])

    def _answer(self, slot: list[Any], index: int, arrival_ns: int, service_ns: int,
                release_ns: int) -> None:
        """Build the held response now that its release time has come, then flush."""
        now_ns = time.perf_counter_ns()
        timing = (f"Server-Timing: total;dur={(now_ns - arrival_ns) / 1e6:.3f}, "
                  f"service;dur={service_ns / 1e6:.3f}, "
                  f"stall;dur={(release_ns - arrival_ns - service_ns) / 1e6:.3f}\r\n").encode()
        slot[0] = _response(b"200 OK", b'{"index":%d}' % index, timing, slot[1])
        self._flush()

    def _queue(self, slot: list[Any]) -> None:
        """Queue an immediate answer behind any held ones."""
        self.pending.append(slot)
        self._flush()

    def _flush(self) -> None:
        """Write every ready answer at the head of the queue (HTTP/1.1 answers stay in order)."""
        while self.pending and self.pending[0][0] is not None:
            data, close, index, done_column = self.pending.popleft()
            if self.transport is None:
                continue  # the client left: the answer is never written, done_ns stays 0
            if index >= 0:  # taken before the write: the client cannot have it any earlier
                done_column[index] = time.perf_counter_ns()
            self.transport.write(data)
            if close:
                self.transport.close()


def precise_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within tens of microseconds of their due time.

    The default loop waits in ``epoll``, whose timeout is whole milliseconds (rounded up), so
    a 5 ms hold would last 5-6 ms; ``select`` takes microseconds. Its limit of about a thousand
    open descriptors is far beyond what a test opens.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def _serve(core: _Core, port: int) -> asyncio.Server:
    """Start listening on 127.0.0.1:``port`` (0 picks a free port)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(core), HOST, port, backlog=1024)


class GroundTruthServer:
    """The server in a daemon thread of this process, with its own event loop."""

    def __init__(self, service: ServiceTime | str = "constant:0", *, stall_s: float = 0.0,
                 stall_every_s: float = 0.0, seed: int = 0, port: int = 0,
                 max_records: int = DEFAULT_MAX_RECORDS, workers: int = 0) -> None:
        law = ServiceTime.parse(service) if isinstance(service, str) else service
        self._core = _Core(law, Stalls(stall_s, stall_every_s), seed, max_records, workers)
        self._loop = precise_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="groundtruth")
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL clients send to."""
        return f"http://{HOST}:{self.port}"

    def _run(self, coro: Any) -> Any:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self) -> GroundTruthServer:
        """Start the thread and bind the port; returns self."""
        self._thread.start()
        self._server = self._run(_serve(self._core, self._requested_port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def records(self) -> GroundTruthRecords:
        """A snapshot of the per-request records."""
        async def snap() -> GroundTruthRecords:
            return self._core.snapshot()
        return self._run(snap())  # type: ignore[no-any-return]

    def reset(self) -> int:
        """Clear the records, reseed, restart the stall clock; the new epoch (ns)."""
        async def reset() -> int:
            return self._core.reset()
        return self._run(reset())  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Close the listener and every connection, then stop the loop and its thread."""
        server, self._server = self._server, None
        if server is not None:
            async def close() -> None:
                server.close()
                for connection in list(self._core.connections):
                    if connection.transport is not None:
                        connection.transport.close()
            self._run(close())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop.close()

    def __enter__(self) -> GroundTruthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GroundTruthProcess:
    """The server in a child process (``python -m modelcaliper.testing.groundtruth``)."""

    def __init__(self, service: str = "constant:0", *, stall_s: float = 0.0,
                 stall_every_s: float = 0.0, seed: int = 0, start_timeout_s: float = 20.0,
                 workers: int = 0) -> None:
        ServiceTime.parse(service)
        Stalls(stall_s, stall_every_s)
        if workers < 0:
            raise UsageError(f"workers must be ≥ 0 (0 = unbounded), got {workers}")
        self.argv = [sys.executable, "-m", "modelcaliper.testing.groundtruth", "--service",
                     service, "--stall", f"{stall_s}", "--stall-every", f"{stall_every_s}",
                     "--seed", str(seed), "--port", "0", "--workers", str(workers)]
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL clients send to."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> GroundTruthProcess:
        """Launch the child and wait for its ready file; returns self."""
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready.json"
            self.process = subprocess.Popen([*self.argv, "--ready-file", str(ready)])
            deadline_s = time.monotonic() + self.start_timeout_s
            while not ready.exists():
                if self.process.poll() is not None or time.monotonic() > deadline_s:
                    self.stop()
                    raise TargetError("the ground-truth server did not start")
                time.sleep(0.02)
            self.port = int(json.loads(ready.read_text())["port"])
        return self

    def _call(self, method: str) -> dict[str, Any]:
        """``method /stats`` on the child, decoded."""
        request = urllib.request.Request(self.url + "/stats", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def records(self) -> GroundTruthRecords:
        """A snapshot of the per-request records."""
        return GroundTruthRecords.from_json(self._call("GET"))

    def reset(self) -> int:
        """Clear the records, reseed, restart the stall clock; the new epoch (ns)."""
        return int(self._call("DELETE")["epoch_ns"])

    def stop(self) -> None:
        """Terminate the child and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None

    def __enter__(self) -> GroundTruthProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m modelcaliper.testing.groundtruth",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="constant:0", help="service-time law")
    parser.add_argument("--stall", default="0", help="length of each freeze, e.g. 300ms")
    parser.add_argument("--stall-every", default="0", help="freeze period, e.g. 3s")
    parser.add_argument("--seed", type=int, default=0, help="service-time RNG seed")
    parser.add_argument("--workers", type=int, default=0,
                        help="requests served at once, FIFO beyond (0 = unbounded)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any)")
    parser.add_argument("--ready-file", type=Path, help="write {port, pid} here once listening")
    args = parser.parse_args(argv)
    try:
        core = _Core(ServiceTime.parse(args.service),
                     Stalls(parse_duration(args.stall, "--stall"),
                            parse_duration(args.stall_every, "--stall-every")),
                     args.seed, DEFAULT_MAX_RECORDS, args.workers)
    except UsageError as exc:
        print(f"error: UsageError: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        server = await _serve(core, args.port)
        core.reset()
        if args.ready_file is not None:
            doc = {"port": server.sockets[0].getsockname()[1], "pid": os.getpid()}
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(args.ready_file)  # atomic: a reader sees all of it or nothing
        async with server:
            await server.serve_forever()

    try:
        with asyncio.Runner(loop_factory=precise_loop) as runner:
            runner.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

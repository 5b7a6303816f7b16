"""An in-memory Transport with seeded service times, errors and stalls: a null system under test.

It answers after a service time drawn per request from the request id (so the same request
gets the same answer whatever the order or worker), optionally from a FIFO of ``servers``
model slots, optionally with a *server stall* (the server freezes for ``stall_s`` from
``stall_at_s`` after ``start()``: everything in it finishes no earlier than the stall's end)
or a *client stall* (one send blocks the event loop for ``client_stall_s``, like a garbage
collection pause in the generator). ``error_rate`` of the requests fail with ``error_kind``;
a service time beyond the request's timeout ends as a timeout. Answers carry server phases.

``MockBehaviour`` is a picklable recipe (``create()`` builds the transport), so that worker
processes can each build their own.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from modelcaliper.errors import TargetError
from modelcaliper.load.transport import Outcome, PreparedRequest, Status

__all__ = ["MockBehaviour", "MockTransport"]


@dataclass(frozen=True)
class MockBehaviour:
    """How the mock target behaves; all times in seconds."""

    service_s: float = 0.002
    jitter_s: float = 0.0  # mean of an exponential extra service time
    error_rate: float = 0.0
    error_kind: str = "http_503"
    seed: int = 0
    servers: int = 0  # model slots; 0 = every request served at once
    stall_at_s: float | None = None
    stall_s: float = 0.0
    client_stall_at_s: float | None = None
    client_stall_s: float = 0.0
    server_timing: bool = True
    drawn_timing: bool = False  # report the drawn service time as compute (exact, for merges)
    response_bytes: int = 64
    unreachable: bool = False
    slow_every: int = 0  # every n-th request (by id hash) takes slow_s instead
    slow_s: float = 0.0

    def create(self) -> MockTransport:
        """A fresh transport with this behaviour."""
        return MockTransport(self)


@dataclass
class MockTransport:
    """The in-memory transport itself; counts what it saw for the tests to inspect."""

    behaviour: MockBehaviour = field(default_factory=MockBehaviour)
    sent: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0
    request_ids: list[str] = field(default_factory=list)
    traceparents: list[str] = field(default_factory=list)
    started_ns: int = 0
    closed: bool = False
    _slots: asyncio.Semaphore | None = None
    _client_stalled: bool = False

    @classmethod
    def with_(cls, **changes: Any) -> MockTransport:
        """A transport whose behaviour differs from the default by ``changes``."""
        return cls(replace(MockBehaviour(), **changes))

    async def start(self) -> None:
        """Refuse to start if the behaviour says the target is unreachable."""
        if self.behaviour.unreachable:
            raise TargetError("cannot connect to mock://127.0.0.1:1 (connection refused)")
        self.started_ns = time.perf_counter_ns()
        if self.behaviour.servers:
            self._slots = asyncio.Semaphore(self.behaviour.servers)

    def _draw(self, request_id: str) -> tuple[float, bool]:
        b = self.behaviour
        rng = random.Random(f"{b.seed}:{request_id}")
        service_s = b.service_s + (rng.expovariate(1.0 / b.jitter_s) if b.jitter_s else 0.0)
        if b.slow_every and rng.randrange(b.slow_every) == 0:
            service_s = b.slow_s
        failed = rng.random() < b.error_rate
        return service_s, failed

    def _stall_end_ns(self, begin_ns: int, end_ns: int) -> int:
        """When a request served over [begin, end) finishes, given the server stall."""
        b = self.behaviour
        if b.stall_at_s is None:
            return end_ns
        stall_begin = self.started_ns + round(b.stall_at_s * 1e9)
        stall_end = stall_begin + round(b.stall_s * 1e9)
        if begin_ns < stall_end and end_ns > stall_begin:
            return max(end_ns, stall_end)
        return end_ns

    async def send(self, request: PreparedRequest, *, request_id: str, traceparent: str,
                   timeout_s: float, keep_body: bool = False) -> Outcome:
        """Answer after the drawn service time (or time out); never raises for failures."""
        b = self.behaviour
        sent_ns = time.perf_counter_ns()
        self.sent += 1
        self.request_ids.append(request_id)
        self.traceparents.append(traceparent)
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        if (b.client_stall_at_s is not None and not self._client_stalled
                and sent_ns - self.started_ns >= b.client_stall_at_s * 1e9):
            self._client_stalled = True
            time.sleep(b.client_stall_s)  # blocks the event loop on purpose
        written_ns = time.perf_counter_ns()
        service_s, failed = self._draw(request_id)
        timeout_ns = sent_ns + round(timeout_s * 1e9)
        try:
            queued_ns = time.perf_counter_ns()
            if self._slots is not None:
                await self._slots.acquire()
            try:
                begin_ns = time.perf_counter_ns()
                end_ns = self._stall_end_ns(begin_ns, begin_ns + round(service_s * 1e9))
                if end_ns > timeout_ns:
                    await asyncio.sleep(max(0.0, (timeout_ns - time.perf_counter_ns()) / 1e9))
                    return Outcome(Status.TIMEOUT, sent_ns, written_ns, 0,
                                   time.perf_counter_ns(), 0, len(request.body), "",
                                   "timeout", f"no answer within {timeout_s:g}s")
                await asyncio.sleep(max(0.0, (end_ns - time.perf_counter_ns()) / 1e9))
            finally:
                if self._slots is not None:
                    self._slots.release()
            done_ns = time.perf_counter_ns()
            phases = {}
            if b.drawn_timing:
                phases = {"compute": service_s * 1e3, "total": service_s * 1e3}
            elif b.server_timing:
                phases = {"queue": (begin_ns - queued_ns) / 1e6,
                          "compute": (done_ns - begin_ns) / 1e6,
                          "total": (done_ns - queued_ns) / 1e6}
            if failed:
                return Outcome(Status.ERROR, sent_ns, written_ns, done_ns, done_ns, 20,
                               len(request.body), "503", b.error_kind,
                               f"mock target refused request {request_id[:8]}", phases)
            body = b"x" * b.response_bytes if keep_body else None
            return Outcome(Status.OK, sent_ns, written_ns, done_ns, done_ns, b.response_bytes,
                           len(request.body), "200", "", "", phases, body)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        """Mark the transport closed."""
        self.closed = True

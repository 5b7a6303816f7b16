"""The open-loop driver: send every unit at its intended time, whatever the target does.

The schedule (``LoadSpec.plan``) fixes each unit's intended send time before the run. The
driver sleeps until a unit is due and *launches* it as a task, so a slow target can never
hold the next send back: latency is ``done − intended``, and any delay between the intended
time and the send — the generator's own lateness (``schedule_lag``) or a wait for an
in-flight slot or a free connection (``client_queue``) — is part of it, never hidden.

Waiting for the intended time: ``asyncio.sleep`` wakes up late by up to a millisecond or more
(epoll timeouts have millisecond resolution, uvloop's clock too), so the driver sleeps
coarsely until ``spin_s`` (1 ms) before the due time and then spins on
``time.perf_counter_ns()``, yielding to the event loop on every turn so that answers keep
being read. The trade-off: at most ``spin_s`` of busy waiting per unit buys a lateness of
tens of microseconds instead of up to a millisecond; at rates near 1 / spin_s the driver
spins most of the time (its CPU share shows it, see ``generator``). Units already due are
launched together without waiting.

Bounds: the run stops at the end of the schedule (its duration or request count), then waits
for outstanding requests at most ``timeout_s`` (times the rounds a query needs under
``per_query_concurrency``) plus a grace; whatever is still outstanding is cancelled and
recorded. ``stop()`` (Ctrl-C) stops scheduling at once, gives outstanding requests a short
grace, records everything and marks the result interrupted.

Each request carries a unique ``x-request-id`` and a W3C ``traceparent``, both derived from
the schedule seed and the request's global index, so a rerun sends the same identifiers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.load.fanout import run_query
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.records import Recorder, RunStats
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.transport import Outcome, PreparedRequest, Status, Transport

__all__ = ["DEFAULT_SPIN_S", "DriveResult", "Driver", "request_ids"]

DEFAULT_SPIN_S = 0.001
"""How long before a unit's intended time the driver stops sleeping and spins."""

_SCHEDULE_CHUNK = 65536
_START_LEAD_NS = 20_000_000  # first unit 20 ms after start(), so set-up never makes it late
_MAX_COARSE_SLEEP_S = 0.05  # re-check stop() at least this often during long gaps
_INTERRUPT_GRACE_S = 1.0
_GUARD_GRACE_S = 1.0  # the driver's own timeout, beyond the transport's

Check = Callable[[PreparedRequest, Outcome], Outcome]
"""Optional answer check: may turn an OK outcome into a MODEL_ERROR one."""


def request_ids(seed: int, index: int) -> tuple[str, str]:
    """The ``x-request-id`` and ``traceparent`` of request ``index`` of a run with ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=24,
                             person=b"caliper-ids").digest()
    trace, span = bytearray(digest[:16]), bytearray(digest[16:])
    # All-zero ids are invalid in W3C Trace Context; make them impossible.
    trace[-1] |= 1 if not any(trace) else 0
    span[-1] |= 1 if not any(span) else 0
    trace_hex, span_hex = trace.hex(), span.hex()
    return trace_hex, f"00-{trace_hex}-{span_hex}-01"


@dataclass
class DriveResult:
    """What one driver (one worker) measured, with its own health facts."""

    stats: RunStats
    worker: int
    interrupted: bool
    started_at_s: float
    """Wall-clock time (epoch seconds) of the run's start, offset 0 of every record."""
    wall_s: float
    cpu_s: float
    units_dispatched: int
    records_path: str | None = None
    queries_path: str | None = None

    @property
    def cpu_percent(self) -> float:
        """Process CPU time over wall time, in percent of one core."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Driver:
    """Runs one share of a schedule against one transport; see the module docstring."""

    def __init__(self, spec: LoadSpec, transport: Transport, pool: RequestPool, *,
                 recorder: Recorder | None = None, worker: int = 0,
                 spin_s: float = DEFAULT_SPIN_S, check: Check | None = None) -> None:
        self.spec = spec
        self.transport = transport
        self.pool = pool
        self.recorder = recorder if recorder is not None else Recorder(worker=worker)
        self.worker = worker
        self.spin_ns = max(0, round(spin_s * 1e9))
        self.check = check
        self.base_ns = 0
        self._stopping = False
        self._cancel_reason = "deadline"
        self._units: set[asyncio.Task[Any]] = set()
        self._leaves: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(spec.max_in_flight) if spec.max_in_flight else None
        self._dispatched = 0
        self._trusted_timeouts = bool(getattr(transport, "enforces_timeout", False))

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Stop scheduling (Ctrl-C); outstanding requests get a short grace, then are recorded."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._stopping

    @property
    def units_dispatched(self) -> int:
        """Units (requests or queries) launched so far."""
        return self._dispatched

    # ------------------------------------------------------------------ the run

    async def run(self, offsets_s: np.ndarray, unit_ids: np.ndarray | None = None, *,
                  start_ns: int | None = None, handle_sigint: bool = False) -> DriveResult:
        """Send the units at ``offsets_s`` (seconds from the start), then wait and record.

        ``unit_ids`` are the units' global indices in the whole schedule (a worker's share);
        ``start_ns`` is the absolute ``perf_counter_ns`` of offset 0 (shared by all workers).
        """
        loop = asyncio.get_running_loop()
        offsets_s = np.asarray(offsets_s, dtype=np.float64)
        if unit_ids is not None and len(unit_ids) != len(offsets_s):
            raise ValueError(f"{len(offsets_s)} offsets but {len(unit_ids)} unit ids")
        warmup_ns = round(self.spec.warmup_s * 1e9)
        self.base_ns = start_ns if start_ns is not None else time.perf_counter_ns() + _START_LEAD_NS
        started_at_s = time.time() + (self.base_ns - time.perf_counter_ns()) / 1e9
        wall0_ns, cpu0_s = time.perf_counter_ns(), time.process_time()
        installed = False
        if handle_sigint:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGINT, self._on_sigint)
                installed = True
        try:
            await self._schedule(offsets_s, unit_ids, warmup_ns)
            await self._drain()
        finally:
            if installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signal.SIGINT)
        stats = self.recorder.close()
        req_path, query_path = self.recorder.path, self.recorder.query_path
        return DriveResult(
            stats=stats, worker=self.worker, interrupted=self._stopping,
            # Wall time from offset 0 (or from the call, if that was later): the lead before
            # offset 0 is idle and would understate the CPU share.
            started_at_s=started_at_s,
            wall_s=(time.perf_counter_ns() - max(wall0_ns, self.base_ns)) / 1e9,
            cpu_s=time.process_time() - cpu0_s, units_dispatched=self._dispatched,
            records_path=str(req_path) if req_path else None,
            queries_path=str(query_path) if query_path and self.spec.fanout else None)

    def _on_sigint(self) -> None:
        self.stop()
        # A second Ctrl-C falls back to the default handler: KeyboardInterrupt.
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def _schedule(self, offsets_s: np.ndarray, unit_ids: np.ndarray | None,
                        warmup_ns: int) -> None:
        base, clock = self.base_ns, time.perf_counter_ns
        # Python ints for the hot loop, converted a chunk at a time so that a long schedule
        # never exists as one list of boxed integers.
        for start in range(0, len(offsets_s), _SCHEDULE_CHUNK):
            part = offsets_s[start:start + _SCHEDULE_CHUNK]
            offsets_ns = np.rint(part * 1e9).astype(np.int64).tolist()
            ids = (range(start, start + len(part)) if unit_ids is None
                   else np.asarray(unit_ids[start:start + len(part)]).tolist())
            n, i = len(offsets_ns), 0
            while i < n:
                if self._stopping:
                    return
                due = base + offsets_ns[i]
                if due > clock():
                    await self._wait_until(due)
                    if self._stopping:
                        return
                now = clock()
                while i < n and base + offsets_ns[i] <= now:
                    self._launch(ids[i], base + offsets_ns[i], offsets_ns[i] < warmup_ns)
                    i += 1

    async def _wait_until(self, due_ns: int) -> None:
        clock, spin = time.perf_counter_ns, self.spin_ns
        while not self._stopping:
            remaining = due_ns - clock()
            if remaining <= 0:
                return
            if remaining > spin:
                await asyncio.sleep(min((remaining - spin) / 1e9, _MAX_COARSE_SLEEP_S))
            else:
                await asyncio.sleep(0)

    def _launch(self, unit_id: int, intended_ns: int, warmup: bool) -> None:
        dispatched_ns = time.perf_counter_ns()
        self._dispatched += 1
        unit = self.pool.unit(unit_id)
        if self.spec.fanout:
            coro: Any = self._query(unit_id, unit, intended_ns, dispatched_ns, warmup)
        else:
            coro = self.request(unit_id, -1, unit[0], intended_ns, dispatched_ns, warmup)
        task = asyncio.ensure_future(coro)
        self._units.add(task)
        task.add_done_callback(self._units.discard)
        if not self.spec.fanout:
            self._leaves.add(task)
            task.add_done_callback(self._leaves.discard)

    async def _query(self, query: int, unit: tuple[PreparedRequest, ...], intended_ns: int,
                     dispatched_ns: int, warmup: bool) -> None:
        per_unit = self.spec.requests_per_unit

        async def send(j: int, prepared: PreparedRequest, gate: asyncio.Semaphore | None
                       ) -> Outcome:
            task = asyncio.current_task()
            if task is not None:
                self._leaves.add(task)
                task.add_done_callback(self._leaves.discard)
            return await self.request(query * per_unit + j, query, prepared, intended_ns,
                                      dispatched_ns, warmup, gate)

        result = await run_query(
            send, unit, intended_ns, deadline_s=self.spec.deadline_s,
            cancel_at_deadline=self.spec.on_deadline == "cancel",
            per_query_concurrency=self.spec.per_query_concurrency)
        self.recorder.add_query(query, intended_ns, result.done_ns, result.requests, result.ok,
                                result.missed, warmup, self.base_ns)

    async def request(self, index: int, query: int, prepared: PreparedRequest, intended_ns: int,
                      dispatched_ns: int, warmup: bool,
                      gate: asyncio.Semaphore | None = None) -> Outcome:
        """Send one request (after its client queue) and record it; never raises on failure."""
        outcome: Outcome | None = None
        held: list[asyncio.Semaphore] = []
        handed_ns = 0
        try:
            for limiter in (gate, self._slots):
                if limiter is None:
                    continue
                if limiter is self._slots and self.spec.on_overload == "drop" \
                        and limiter.locked():
                    outcome = Outcome(Status.DROPPED, done_ns=time.perf_counter_ns(),
                                      error_kind="dropped",
                                      error_message=f"{self.spec.max_in_flight} requests in "
                                                    "flight (--max-in-flight); not sent")
                    return outcome
                await limiter.acquire()
                held.append(limiter)
            request_id, traceparent = request_ids(self.spec.seed, index)
            handed_ns = time.perf_counter_ns()
            guard_s = self.spec.timeout_s + _GUARD_GRACE_S
            try:
                if self._trusted_timeouts:
                    # Our transports end every send by timeout_s themselves; an extra timer
                    # per request would cost ~4 µs at rates where every µs shows as lag.
                    outcome = await self.transport.send(
                        prepared, request_id=request_id, traceparent=traceparent,
                        timeout_s=self.spec.timeout_s, keep_body=self.spec.keep_bodies)
                else:
                    async with asyncio.timeout(guard_s):
                        outcome = await self.transport.send(
                            prepared, request_id=request_id, traceparent=traceparent,
                            timeout_s=self.spec.timeout_s, keep_body=self.spec.keep_bodies)
            except TimeoutError:
                outcome = Outcome(Status.TIMEOUT, sent_ns=handed_ns,
                                  done_ns=time.perf_counter_ns(),
                                  request_bytes=len(prepared.body), error_kind="timeout",
                                  error_message=f"no answer within {guard_s:g}s (the "
                                                "transport did not time out by itself)")
            if self.check is not None and outcome.status == Status.OK:
                outcome = self.check(prepared, outcome)
            return outcome
        except asyncio.CancelledError:
            # Our own cancellations only (deadline, end of run, Ctrl-C): record and return.
            reason = self._cancel_reason
            outcome = Outcome(Status.CANCELLED, sent_ns=handed_ns, done_ns=time.perf_counter_ns(),
                              request_bytes=len(prepared.body) if handed_ns else 0,
                              error_kind=reason, error_message=_CANCEL_MESSAGES[reason])
            return outcome
        finally:
            for limiter in held:
                limiter.release()
            if outcome is None:  # an unexpected exception from the transport
                outcome = Outcome(Status.ERROR, sent_ns=handed_ns, done_ns=time.perf_counter_ns(),
                                  error_kind="client", error_message="transport raised")
            self.recorder.add(index, query, intended_ns, dispatched_ns, outcome, prepared.rows,
                              warmup, self.base_ns)

    async def _drain(self) -> None:
        """Wait for outstanding units (bounded), then cancel and record what is left."""
        if self._stopping:
            limit_s = _INTERRUPT_GRACE_S
        else:
            rounds = 1
            if self.spec.fanout and self.spec.per_query_concurrency:
                rounds = math.ceil(self.spec.requests_per_unit / self.spec.per_query_concurrency)
            # Past every request's own guard (timeout + grace from its send), with a margin.
            limit_s = self.spec.timeout_s * rounds + 2 * _GUARD_GRACE_S + self.spec.deadline_s
        if self._units:
            await asyncio.wait(set(self._units), timeout=limit_s)
        if self._units:
            self._cancel_reason = "interrupted" if self._stopping else "run_end"
            for task in list(self._leaves):
                task.cancel()
            await asyncio.wait(set(self._units), timeout=5.0)
            for task in list(self._units):  # a query still waiting: give up on it too
                task.cancel()
            if self._units:
                await asyncio.wait(set(self._units), timeout=1.0)


_CANCEL_MESSAGES = {
    "deadline": "abandoned at the query deadline (--on-deadline cancel)",
    "run_end": "still outstanding when the run's wait for answers ended",
    "interrupted": "abandoned when the run was interrupted",
}

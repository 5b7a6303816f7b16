"""Query fan-out: one query of K candidates is ceil(K / batch_size) model requests.

All requests of a query are due at the query's intended time (at most
``per_query_concurrency`` outstanding at once when that is set; the others wait in the
client, which shows as their ``client_queue`` phase). The query's latency runs from its
intended time to the completion of its last request. With a deadline, a query whose latency
exceeds it is a *miss*; ``on_deadline="cancel"`` abandons the requests still outstanding at
the deadline (they end ``CANCELLED``, and the query ends at the deadline), ``"wait"`` lets
them finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from modelcaliper.load.transport import Outcome, PreparedRequest, Status

__all__ = ["QueryResult", "SendOne", "run_query"]

SendOne = Callable[[int, PreparedRequest, "asyncio.Semaphore | None"], Awaitable[Outcome]]
"""Sends request ``j`` of the query (holding the semaphore, if any) and records it."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """How one query ended: its completion time, its requests, and whether it missed."""

    done_ns: int
    requests: int
    ok: int
    missed: bool

    def latency_ns(self, intended_ns: int) -> int:
        """Completion of the last request minus the query's intended time."""
        return self.done_ns - intended_ns


async def run_query(send: SendOne, unit: Sequence[PreparedRequest], intended_ns: int, *,
                    deadline_s: float = 0.0, cancel_at_deadline: bool = False,
                    per_query_concurrency: int = 0) -> QueryResult:
    """Issue every request of one query now and wait for them (or for the deadline)."""
    gate = None
    if per_query_concurrency and per_query_concurrency < len(unit):
        gate = asyncio.Semaphore(per_query_concurrency)
    tasks = [asyncio.ensure_future(send(j, prepared, gate)) for j, prepared in enumerate(unit)]
    deadline_ns = intended_ns + round(deadline_s * 1e9) if deadline_s else 0
    try:
        if deadline_ns and cancel_at_deadline:
            remaining_s = max(0.0, (deadline_ns - time.perf_counter_ns()) / 1e9)
            _, pending = await asyncio.wait(tasks, timeout=remaining_s)
            for task in pending:
                task.cancel()
        outcomes: list[Outcome] = list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:
        # The driver abandons the run's leftovers by cancelling requests, not queries; if the
        # query itself is cancelled, its requests still end as records before it gives up.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    done_ns = max((o.done_ns for o in outcomes if o.done_ns), default=time.perf_counter_ns())
    ok = sum(1 for o in outcomes if o.status == Status.OK)
    abandoned = any(o.status == Status.CANCELLED for o in outcomes)
    missed = bool(deadline_ns) and (done_ns > deadline_ns or abandoned)
    return QueryResult(done_ns, len(outcomes), ok, missed)

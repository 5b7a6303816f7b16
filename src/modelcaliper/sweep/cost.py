"""Client cost: the generator's CPU time per request and per candidate, and the server's.

A run's own CPU figure (``generator.cpu_percent``) includes the driver's busy-waiting before
each intended send time (up to 1 ms per request, by design: ``load.driver``), which would
drown the differences between encodings. So each configuration's client cost is measured
apart, just before its first run, against the same server:

- **encode**: CPU time (``time.process_time``) to turn rows into model requests, encode and
  compress them, over a small pool of the point's own requests (``load.pool.build_pool``);
- **send + receive**: CPU time of the whole process while sending those requests one after
  another over a fresh transport of the point's protocol and reading the answers: the
  transport's work, gRPC's threads included, and no idle time.

Their sum is the CPU per request; divided by the rows in a request, the CPU per candidate.
The server's CPU comes from ``/proc/<pid>/stat`` before and after a run (Linux, a server we
started), per request it answered.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcaliper.load.transport import Status

__all__ = ["ClientCost", "measure_client_cost", "process_cpu_s"]

_PROBE_REQUESTS = 64
"""Requests encoded (and at most sent) to measure a configuration's client cost."""
_MIN_SENT = 8
_MAX_SEND_S = 1.5


@dataclass(frozen=True)
class ClientCost:
    """CPU microseconds the generator spends per request: encoding and sending + receiving."""

    encode_us: float
    send_receive_us: float | None
    rows_per_request: float
    requests_encoded: int
    requests_sent: int
    request_bytes: float

    @property
    def per_request_us(self) -> float | None:
        """encode + send + receive, per request."""
        if self.send_receive_us is None:
            return None
        return self.encode_us + self.send_receive_us

    @property
    def per_candidate_us(self) -> float | None:
        """The cost per request divided by its rows."""
        total = self.per_request_us
        return None if total is None else total / max(self.rows_per_request, 1.0)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the measurement."""
        return {"encode_us_per_request": self.encode_us,
                "send_receive_us_per_request": self.send_receive_us,
                "us_per_request": self.per_request_us, "us_per_candidate": self.per_candidate_us,
                "rows_per_request": self.rows_per_request,
                "requests_encoded": self.requests_encoded, "requests_sent": self.requests_sent,
                "request_bytes": self.request_bytes}


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` and its threads so far (Linux; else None)."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # After the name: state is field 3, utime 14 and stime 15 (1-based) of proc(5).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _encode(spec: Any, signature: Any, model_name: str) -> tuple[Any, float]:
    """A small pool of the spec's requests and the CPU seconds its encoding took."""
    from modelcaliper.load.pool import build_pool, unit_requests
    from modelcaliper.workload.loader import load_rows_from

    load = spec.load
    per_unit = load.candidates or load.batch_size
    units = max(1, _PROBE_REQUESTS // load.requests_per_unit)
    rows = load_rows_from(spec.selection, signature, default_rows=per_unit * units,
                          synthetic_query_size=load.candidates or 100)

    def build(count: int) -> Any:
        return build_pool(itertools.islice(
            unit_requests(rows.columns, signature, batch_size=load.batch_size,
                          candidates=load.candidates, model_name=model_name), count),
            spec.encoding, spec.compression, spec.level, spec.pool_mb)

    build(1)  # first use of a codec pays for imports and caches: not a per-request cost
    started = time.process_time()
    pool = build(units)
    return pool, time.process_time() - started


async def _send_all(pool: Any, protocol: str, url: str,
                    timeout_s: float) -> tuple[float, int, int]:
    """CPU seconds spent sending the pool's requests one by one, how many sent and answered."""
    from modelcaliper.load.driver import request_ids
    from modelcaliper.load.workers import TransportRecipe

    transport = TransportRecipe(protocol, url, 1)()
    await transport.start()
    try:
        requests = [r for unit in pool.units for r in unit]
        # One unmeasured request first: connection set-up is not a per-request cost.
        request_id, traceparent = request_ids(1, 0)
        await transport.send(requests[0], request_id=request_id, traceparent=traceparent,
                             timeout_s=timeout_s)
        started_cpu, started_wall = time.process_time(), time.monotonic()
        sent = answered = 0
        for request in itertools.cycle(requests):
            sent += 1
            request_id, traceparent = request_ids(1, sent)
            outcome = await transport.send(request, request_id=request_id,
                                           traceparent=traceparent, timeout_s=timeout_s)
            answered += outcome.status == Status.OK
            if sent >= len(requests) or (sent >= _MIN_SENT
                                         and time.monotonic() - started_wall > _MAX_SEND_S):
                break
        return time.process_time() - started_cpu, sent, answered
    finally:
        await transport.close()


def measure_client_cost(spec: Any, signature: Any, model_name: str, url: str) -> ClientCost:
    """Encode a small pool of ``spec``'s requests and send it to ``url``, timing the CPU."""
    pool, encode_s = _encode(spec, signature, model_name)
    count = pool.request_count
    rows = sum(r.rows for unit in pool.units for r in unit) / count
    cpu_s, sent, answered = asyncio.run(_send_all(pool, spec.protocol, url,
                                                  spec.load.timeout_s))
    return ClientCost(encode_us=encode_s / count * 1e6,
                      send_receive_us=cpu_s / sent * 1e6 if answered else None,
                      rows_per_request=rows, requests_encoded=count, requests_sent=answered,
                      request_bytes=pool.mean_request_bytes)

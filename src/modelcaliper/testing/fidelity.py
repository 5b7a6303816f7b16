"""Fidelity experiments: load the ground-truth server with the engine and compare with the truth.

``open_loop`` runs the real driver (``load.workers.run_load_async``) with the HTTP transport at a
constant rate against a ``GroundTruthProcess`` and joins every measured client record to the
server's record of the same request through its ``x-request-id`` (derived from the seed and
the request's index, ``load.driver.request_ids``). ``closed_loop`` is the naive baseline: one
request at a time, latency measured from the actual send. Both are bounded in time and count.
Shared by ``tests/load/test_fidelity.py`` and ``bench/fidelity.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.load.driver import request_ids
from modelcaliper.load.http import HttpTransport
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.records import read_records
from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.summary import build_summary
from modelcaliper.load.transport import PreparedRequest, Status
from modelcaliper.load.workers import run_load_async
from modelcaliper.testing.groundtruth import GroundTruthProcess
from modelcaliper.testing.truth import GroundTruthRecords

__all__ = ["OpenLoopRun", "closed_loop", "open_loop", "within"]

BODY = b'{"instances": [[0.5, 1.5]]}'
REQUEST = PreparedRequest("/v1/models/m:predict", BODY, (("content-type", "application/json"),))
POOL = RequestPool(((REQUEST,),), "tfserving-rest rows", "none", "http", 0.0, len(BODY))
"""One small JSON request, reused: the ground-truth server ignores what it is sent."""


@dataclass
class OpenLoopRun:
    """One open-loop run: its summary, and per measured request the latency and the truth."""

    summary: dict[str, Any]
    latency_ms: np.ndarray  # done − intended, from the client records
    true_ms: np.ndarray  # arrival → answer written, the server's record of the same request
    server: GroundTruthRecords
    server_rows: np.ndarray  # each measured request's position in the server's records

    @property
    def stall_wait_ms(self) -> np.ndarray:
        """Per measured request, how long the stall model held it beyond its service time."""
        return self.server.stall_wait_s[self.server_rows] * 1e3

    def reported(self, name: str) -> float:
        """A reported latency statistic (``p50``, ``p99``, ``mean``...) in ms."""
        return float(self.summary["latency_ms"][name])

    @property
    def lag_p99_ms(self) -> float:
        """The generator's schedule lag p99, as the run reported it."""
        return float(self.summary["generator"]["schedule_lag_ms"]["p99"])

    @property
    def saturated(self) -> bool:
        """Whether the generator reported itself saturated (its own lag made it late)."""
        return bool(self.summary["generator"]["saturated"])


def within(reported_ms: float, expected_ms: float) -> bool:
    """Whether a reported value is within max(2 %, 0.5 ms) of the expected one."""
    return abs(reported_ms - expected_ms) <= max(0.02 * expected_ms, 0.5)


def open_loop(server: GroundTruthProcess, *, rate_per_s: float, duration_s: float,
              warmup_s: float = 0.5, seed: int = 42, connections: int = 128,
              timeout_s: float = 5.0) -> OpenLoopRun:
    """Reset ``server``, load it at ``rate_per_s`` constant, and join the two sides' records."""
    spec = LoadSpec(arrival="constant", rate_per_s=rate_per_s, duration_s=duration_s,
                    warmup_s=warmup_s, timeout_s=timeout_s, connections=connections, seed=seed)
    plan = spec.plan()

    async def drive(records_dir: str) -> Any:
        transport = HttpTransport(server.url, connections=connections)
        await transport.start()
        try:
            return await run_load_async(spec, plan, POOL, transport, records_dir=records_dir)
        finally:
            await transport.close()

    server.reset()
    with tempfile.TemporaryDirectory() as records_dir:
        result = asyncio.run(drive(records_dir))
        table = read_records(result.records_paths).to_pydict()
    truth = server.records()
    summary = build_summary(result, spec, plan, pool=POOL)
    rows = [i for i, warmup in enumerate(table["warmup"]) if not warmup]
    failed = [table["error_kind"][i] for i in rows if table["status"][i] != "ok"]
    if failed or len(rows) != plan.measured_units:
        raise AssertionError(f"{len(rows)} of {plan.measured_units} requests measured, "
                             f"failures: {sorted(set(failed))}")
    by_id = {request_id: i for i, request_id in enumerate(truth.request_ids)}
    server_rows = np.array([by_id[request_ids(seed, table["index"][i])[0]] for i in rows],
                           dtype=np.int64)
    latency_ms = np.array([table["done_ns"][i] - table["intended_ns"][i] for i in rows]) / 1e6
    return OpenLoopRun(summary, latency_ms, truth.latency_s[server_rows] * 1e3, truth,
                       server_rows)


def closed_loop(server: GroundTruthProcess, *, duration_s: float, max_requests: int = 20_000,
                seed: int = 43) -> np.ndarray:
    """The naive baseline: one request at a time, each latency from its actual send, in ms."""

    async def drive() -> list[float]:
        transport = HttpTransport(server.url, connections=1)
        await transport.start()
        latencies: list[float] = []
        end_ns = time.perf_counter_ns() + round(duration_s * 1e9)
        try:
            while time.perf_counter_ns() < end_ns and len(latencies) < max_requests:
                request_id, traceparent = request_ids(seed, len(latencies))
                outcome = await transport.send(REQUEST, request_id=request_id,
                                               traceparent=traceparent, timeout_s=5.0)
                if outcome.status is not Status.OK:
                    raise AssertionError(f"closed loop: {outcome.error_kind}: "
                                         f"{outcome.error_message}")
                latencies.append((outcome.done_ns - outcome.sent_ns) / 1e6)
        finally:
            await transport.close()
        return latencies

    server.reset()
    return np.array(asyncio.run(drive()))

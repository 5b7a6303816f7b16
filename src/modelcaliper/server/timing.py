"""Per-request server phases and their W3C ``Server-Timing`` form.

The embedded server times each request in phases and sends them back, so the client can
split its round trip into "the server's" and "the network's":

    recv     reading the request body            decode   parsing it into tensors
    queue    waiting for a model slot            batch    waiting for a batch to fill
    compute  running the model (or, where the model marks the boundary, ``transform`` and
             ``model`` separately)               encode   serializing the response
    total    from the first byte read to the response handed to the transport

Over HTTP they travel as ``Server-Timing: recv;dur=0.012, decode;dur=0.030, ...`` (W3C
Server Timing, durations in milliseconds); over gRPC as the ``server-timing`` trailing
metadata entry with the same value.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

__all__ = [
    "PHASES",
    "REPORTED_PHASES",
    "PhaseTimer",
    "charge_failed_phase",
    "format_server_timing",
    "parse_server_timing",
]

PHASES: tuple[str, ...] = (
    "recv",
    "decode",
    "queue",
    "batch",
    "compute",
    "transform",
    "model",
    "encode",
    "total",
)


REPORTED_PHASES: tuple[str, ...] = ("recv", "decode", "queue", "batch", "compute", "encode")
"""Phases every inference response reports, 0 when the request did not get that far."""


class PhaseTimer:
    """Accumulates named phase durations for one request, in nanoseconds."""

    __slots__ = ("durations_ns", "start_ns", "_mark_ns")

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = time.perf_counter_ns() if start_ns is None else start_ns
        self._mark_ns = self.start_ns
        self.durations_ns: dict[str, int] = {}

    def lap(self, phase: str) -> int:
        """Close ``phase`` at now (it began at the previous lap); return now in ns."""
        now = time.perf_counter_ns()
        self.durations_ns[phase] = self.durations_ns.get(phase, 0) + now - self._mark_ns
        self._mark_ns = now
        return now

    @property
    def mark_ns(self) -> int:
        """When the current (not yet lapped) phase began."""
        return self._mark_ns

    def add(self, phase: str, duration_ns: int) -> None:
        """Record a phase measured elsewhere (for example inside a batching thread)."""
        self.durations_ns[phase] = self.durations_ns.get(phase, 0) + max(0, int(duration_ns))

    def skip_to_now(self, now_ns: int | None = None) -> None:
        """Move the lap mark to now (or ``now_ns``, a time the caller already charged up to)
        without charging the elapsed time to any phase."""
        self._mark_ns = time.perf_counter_ns() if now_ns is None else now_ns

    def finish(self) -> dict[str, float]:
        """Set ``total`` from the start to the last lap and return all phases in milliseconds.

        Callers lap their last phase (``encode``, or the failed one) just before, so the phases
        add up to ``total`` exactly; with nothing lapped yet, ``total`` runs to now.
        """
        end_ns = self._mark_ns if self._mark_ns > self.start_ns else time.perf_counter_ns()
        self.durations_ns["total"] = end_ns - self.start_ns
        return {k: v / 1e6 for k, v in self.durations_ns.items()}


def charge_failed_phase(timer: PhaseTimer) -> None:
    """Charge the time since the last lap to the phase a failed inference request was in.

    Phases are lapped in order (recv, decode, queue, compute, encode), so the first one
    missing is where the request stopped: a malformed body in decode, a full queue or bad
    inputs in queue, the model's own failure in compute.
    """
    done = timer.durations_ns
    for phase in ("recv", "decode", "queue", "compute", "encode"):
        if phase not in done:
            timer.lap(phase)
            return
    timer.lap("encode")


def format_server_timing(phases_ms: Mapping[str, float]) -> str:
    """Render phases as a ``Server-Timing`` header value, in the canonical phase order."""
    order = [p for p in PHASES if p in phases_ms] + [p for p in phases_ms if p not in PHASES]
    return ", ".join(f"{name};dur={phases_ms[name]:.3f}" for name in order)


def parse_server_timing(values: str | Iterable[str] | None) -> dict[str, float]:
    """Parse one or more ``Server-Timing`` values into ``{metric: milliseconds}``.

    Metrics without a ``dur`` parameter, and malformed entries, are ignored: the header
    comes from a server we may not control and must never fail a request.
    """
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    out: dict[str, float] = {}
    for value in values:
        for entry in value.split(","):
            parts = [p.strip() for p in entry.split(";")]
            name = parts[0]
            if not name:
                continue
            for param in parts[1:]:
                key, _, raw = param.partition("=")
                if key.strip().lower() == "dur":
                    try:
                        out[name] = float(raw.strip().strip('"'))
                    except ValueError:
                        pass
                    break
    return out

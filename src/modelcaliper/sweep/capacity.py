"""Capacity search: the highest rate a configuration sustains within its SLO, and its curve.

``search_capacity(measure, start_rps=...)`` calls ``measure(rate)`` — one early-stopped run at
that offered rate, returning a ``Step`` that says whether the SLO held — and brackets the
capacity in two stages:

1. **exponential**: from ``start_rps``, multiply the rate by ``growth`` (2) while the SLO
   holds; if it fails at the start, divide instead until it holds (or ``min_rps`` is passed:
   no rate meets the SLO);
2. **bisection**: between the highest rate that held (``low``) and the lowest that failed
   (``high``), try their geometric mean until ``high / low`` is within ``1 + tolerance``
   (5 %) or ``max_steps`` runs were made.

The capacity is ``low``; the truth lies in ``[low, high)`` as far as the steps can tell. A
step that failed to run (the server died) counts as a failure at that rate.

``knee`` finds where the latency–throughput curve turns upward (the Kneedle rule: with the
rate and the logarithm of the latency each scaled to [0, 1], the point farthest below the
straight line from the first point to the last), for any list of points, from a capacity
search or from fixed rates. The logarithm, because past the capacity latency grows by orders
of magnitude: on a linear scale the last overloaded point would flatten all the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["CapacityResult", "SearchSettings", "Step", "curve_of", "knee", "search_capacity"]


@dataclass(frozen=True)
class SearchSettings:
    """How a capacity search moves: start, growth, stop tolerance, step budget, bounds."""

    start_rps: float = 10.0
    growth: float = 2.0
    tolerance: float = 0.05
    max_steps: int = 12
    min_rps: float = 0.01
    max_rps: float = 0.0
    """Highest rate to try; 0 = no limit."""

    def __post_init__(self) -> None:
        if not self.start_rps > 0 or not math.isfinite(self.start_rps):
            raise UsageError(f"--start-rps must be > 0, got {self.start_rps}")
        if not self.growth > 1:
            raise UsageError(f"the search's growth factor must be > 1, got {self.growth}")
        if not 0 < self.tolerance < 1:
            raise UsageError(f"--capacity-tolerance must be a fraction between 0 and 1 "
                             f"(0.05 = 5 %), got {self.tolerance}")
        if self.max_steps < 2:
            raise UsageError(f"--max-steps must be ≥ 2, got {self.max_steps}")
        if self.max_rps and self.max_rps < self.start_rps:
            raise UsageError(f"--max-rps {self.max_rps:g} is below --start-rps "
                             f"{self.start_rps:g}")

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the settings."""
        return {"start_rps": self.start_rps, "growth": self.growth,
                "tolerance": self.tolerance, "max_steps": self.max_steps,
                "min_rps": self.min_rps, "max_rps": self.max_rps or None}


@dataclass(frozen=True)
class Step:
    """One rate tried: whether the SLO held, and the figures the curve needs."""

    rate_per_s: float
    passed: bool
    latency_ms: float | None = None
    """The watched percentile (the SLO's, else p99) at this rate."""
    throughput_per_s: float | None = None
    """Achieved rate of successful units (requests, or queries with fan-out)."""
    ran: bool = True
    """False when the step could not be measured (its run failed)."""
    ref: Any = None
    """Whatever the caller wants to find the step again by (a run id)."""


@dataclass
class CapacityResult:
    """The search's answer: the capacity, its bracket, every step, the curve and the knee."""

    capacity_rps: float | None
    low_rps: float | None
    high_rps: float | None
    steps: list[Step] = field(default_factory=list)
    reason: str = ""

    def curve(self) -> list[dict[str, Any]]:
        """The measured points sorted by offered rate."""
        return curve_of(self.steps)

    def knee(self) -> dict[str, Any] | None:
        """The curve's knee (see ``knee``)."""
        return knee(self.curve())

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record: capacity, bracket, reason, curve, knee, steps in order."""
        return {"capacity_rps": self.capacity_rps, "low_rps": self.low_rps,
                "high_rps": self.high_rps, "reason": self.reason, "curve": self.curve(),
                "knee": self.knee(), "steps": [_step_dict(s) for s in self.steps]}


def _step_dict(step: Step) -> dict[str, Any]:
    return {"rate_per_s": step.rate_per_s, "passed": step.passed, "ran": step.ran,
            "latency_ms": step.latency_ms, "throughput_per_s": step.throughput_per_s,
            "ref": step.ref}


def curve_of(steps: Sequence[Step]) -> list[dict[str, Any]]:
    """Steps that ran, sorted by offered rate, as JSON-ready points of the curve."""
    return [_step_dict(s) for s in sorted(steps, key=lambda s: s.rate_per_s) if s.ran]


def knee(curve: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The point where latency turns up: farthest below the chord, rate and log latency scaled.

    Needs three points with a latency; None when there are fewer or the curve is flat.
    """
    points = [p for p in curve if p.get("latency_ms") is not None and p["latency_ms"] > 0]
    if len(points) < 3:
        return None
    xs = [float(p["rate_per_s"]) for p in points]
    ys = [math.log(float(p["latency_ms"])) for p in points]
    x_span, y_span = max(xs) - min(xs), max(ys) - min(ys)
    if x_span <= 0 or y_span <= 0:
        return None
    gaps = [(x - min(xs)) / x_span - (y - min(ys)) / y_span for x, y in zip(xs, ys, strict=True)]
    best = max(range(len(points)), key=lambda i: gaps[i])
    if gaps[best] <= 0:
        return None
    return dict(points[best])


def search_capacity(measure: Callable[[float], Step], settings: SearchSettings | None = None,
                    *, say: Callable[[str], None] | None = None) -> CapacityResult:
    """Bracket the highest rate whose step passes (see the module docstring)."""
    s = settings or SearchSettings()
    tell = say or (lambda _text: None)
    steps: list[Step] = []

    def probe(rate: float) -> bool:
        step = measure(rate)
        steps.append(step)
        tell(f"  {rate:.4g}/s {'held' if step.passed else 'failed'}")
        return step.passed

    low: float | None = None
    high: float | None = None
    rate = s.start_rps
    reason = ""
    if probe(rate):
        low = rate
        while len(steps) < s.max_steps:
            if s.max_rps and low >= s.max_rps:
                reason = f"held up to --max-rps {s.max_rps:g}"
                break
            rate = low * s.growth
            if s.max_rps:
                rate = min(rate, s.max_rps)
            if probe(rate):
                low = rate
            else:
                high = rate
                break
        else:
            reason = f"held at every rate tried ({s.max_steps} steps); raise --max-steps"
    else:
        high = rate
        while len(steps) < s.max_steps:
            rate = high / s.growth
            if rate < s.min_rps:
                reason = f"no rate down to {s.min_rps:g}/s met the SLO"
                break
            if probe(rate):
                low = rate
                break
            high = rate
        else:
            reason = f"no rate down to {high:g}/s met the SLO ({s.max_steps} steps)"
    if low is not None and high is not None:
        while high / low > 1 + s.tolerance and len(steps) < s.max_steps:
            middle = math.sqrt(low * high)
            if probe(middle):
                low = middle
            else:
                high = middle
        reason = (f"bracketed within {100 * (high / low - 1):.1f}%" if high / low
                  <= 1 + s.tolerance else f"step budget spent ({s.max_steps}); bracket "
                  f"{low:.4g}-{high:.4g}/s")
    return CapacityResult(low, low, high, steps, reason)

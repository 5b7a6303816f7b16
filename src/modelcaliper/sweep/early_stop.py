"""Early stopping: end a point's load as soon as what it measures is known well enough.

The idea is MLPerf LoadGen's: a tail percentile estimated from n samples comes with a
distribution-free confidence interval from order statistics (``stats.confidence``), so the run
can stop once that interval says enough. After at least ``min_units`` measured requests (or
queries, for a query percentile) spread over at least ``min_duration_s`` (2 s, so that a
queue building up slowly near capacity has time to show), on every live batch (twice a
second), the load stops when

1. **precise**: every watched percentile's 95 % interval has a relative half-width of at most
   ``precision`` (±10 % by default): the figure itself is known; or
2. **decided** (with an SLO): every latency SLO's interval lies wholly on its passing side,
   or one lies wholly on its failing side, or an error-rate SLO is failed beyond doubt (the
   lower end of its Wilson interval is above the limit): the verdict is known. A passing
   error rate is never "proven" this way — showing a rate below 0.1 % takes thousands of
   requests — so a point that passes stops on its latency alone.

Otherwise the run ends at its planned duration (``--duration``, the maximum per point). The
watched percentiles are those the SLO names (``p99``, ``query_p95``, ...); without a latency
SLO, the p99 of requests (of queries with fan-out). The latency of a request is the one the
summary reports: from its intended send time to its end, for every request that ended.

``EarlyStop`` is a ``runner.ProgressSink``: ``runner.execute`` hands it each live batch and
ends the load when ``update`` returns True. It can also stop a point whose server died
(``abort``), and forwards every call to an inner sink (the live progress line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.load.transport import Status
from modelcaliper.runner import ProgressSink
from modelcaliper.stats.confidence import quantile_ci

__all__ = ["DEFAULT_MIN_DURATION_S", "DEFAULT_MIN_UNITS", "DEFAULT_PRECISION", "EarlyStop",
           "RatioWatch", "StopRule", "Watch", "watches_for", "wilson_interval"]

DEFAULT_PRECISION = 0.10
"""Relative half-width at which a percentile counts as known (±10 %)."""

DEFAULT_MIN_UNITS = 400
"""Measured requests (or queries) before any early stop; p99 needs ≥ 367 for a 95 % bound."""

DEFAULT_MIN_DURATION_S = 2.0
"""Measured seconds before any early stop."""

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_ENDED = np.array([Status.OK, Status.ERROR, Status.TIMEOUT, Status.MODEL_ERROR])
_ERRORS = np.array([Status.ERROR, Status.TIMEOUT, Status.MODEL_ERROR, Status.DROPPED])


@dataclass(frozen=True)
class StopRule:
    """When a point may stop early; ``enabled`` False runs every point to its duration."""

    precision: float = DEFAULT_PRECISION
    """Largest relative half-width of a watched percentile's interval that counts as known."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    min_units: int = DEFAULT_MIN_UNITS
    """Measured requests (queries for a query percentile) before any stop."""
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    """Measured seconds (intended times of the first and last unit seen) before any stop."""
    decide: bool = True
    """Also stop once every SLO verdict is known (see the module docstring)."""
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.precision < 1:
            raise UsageError(f"--precision must be a fraction between 0 and 1 (0.1 = ±10 %), "
                             f"got {self.precision}")
        if not 0 < self.confidence < 1:
            raise UsageError(f"--confidence must be between 0 and 1, got {self.confidence}")
        if self.min_units < 1:
            raise UsageError(f"--min-requests must be ≥ 1, got {self.min_units}")
        if not 0 <= self.min_duration_s < math.inf:
            raise UsageError(f"--min-duration must be ≥ 0, got {self.min_duration_s}")

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the rule."""
        return {"enabled": self.enabled, "precision": self.precision,
                "confidence": self.confidence, "min_units": self.min_units,
                "min_duration_s": self.min_duration_s, "decide": self.decide}


@dataclass(frozen=True)
class Watch:
    """A latency percentile to pin down: of requests or queries, with an SLO bound or none."""

    name: str
    percentile: float
    queries: bool
    threshold_ms: float | None = None
    op: str | None = None


@dataclass(frozen=True)
class RatioWatch:
    """An error-rate SLO (``error_rate``, ``timeout_rate``, ``deadline_miss_rate``)."""

    name: str
    threshold: float
    op: str


def watches_for(assertions: Sequence[Any], *, fanout: bool
                ) -> tuple[tuple[Watch, ...], tuple[RatioWatch, ...]]:
    """The percentiles and error rates an SLO asks about (p99 of the unit without one)."""
    watches: list[Watch] = []
    ratios: list[RatioWatch] = []
    for assertion in assertions:
        name = assertion.metric.name
        base = name.removeprefix("query_")
        if assertion.metric.kind == "latency" and base in _PERCENTILES \
                and name != "schedule_lag_p99":
            watches.append(Watch(name, _PERCENTILES[base], name.startswith("query_"),
                                 assertion.threshold, assertion.op))
        elif assertion.metric.kind == "ratio":
            ratios.append(RatioWatch(name, assertion.threshold, assertion.op))
    if not watches:
        watches.append(Watch("query_p99" if fanout else "p99", 99.0, fanout))
    return tuple(watches), tuple(ratios)


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    low = 0.0 if hits == 0 else max(0.0, (centre - spread) / scale)
    high = 1.0 if hits == n else min(1.0, (centre + spread) / scale)
    return low, high


def _passes(value: float, op: str, threshold: float) -> bool:
    return value < threshold if op == "<" else value <= threshold


@dataclass
class _Samples:
    """Latencies (ms) of measured units, kept as a list of arrays until needed."""

    parts: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.parts.append(values)
            self.count += len(values)

    def array(self) -> np.ndarray:
        if len(self.parts) > 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0] if self.parts else np.empty(0)


class EarlyStop(ProgressSink):
    """Watches a point's live records and says when to stop (see the module docstring)."""

    def __init__(self, rule: StopRule, watches: Sequence[Watch],
                 ratios: Sequence[RatioWatch] = (), *, inner: ProgressSink | None = None,
                 abort: Callable[[], str | None] | None = None) -> None:
        self.rule = rule
        self.watches = tuple(watches)
        self.ratios = tuple(ratios)
        self.inner = inner
        self.abort = abort
        self.requests = _Samples()
        self.queries = _Samples()
        self.status_counts = np.zeros(len(Status), dtype=np.int64)
        self.query_count = 0
        self.query_misses = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.reason: str | None = None
        """Why the load was stopped early (None: it ran its course)."""
        self.rule_met: str | None = None
        """``precise``, ``decided`` or ``aborted`` once stopped."""
        self.intervals: dict[str, dict[str, Any]] = {}
        """The watched percentiles' last intervals (ms), by name."""

    def start(self, spec: Any, plan: Any) -> None:
        """Forward the start to the inner sink."""
        if self.inner is not None:
            self.inner.start(spec, plan)

    def finish(self) -> None:
        """Forward the end to the inner sink."""
        if self.inner is not None:
            self.inner.finish()

    def update(self, batch: Any) -> bool:
        """Fold a live batch in; True when the point may stop."""
        if self.inner is not None:
            self.inner.update(batch)
        self._fold(batch)
        if self.reason is not None:
            return True
        if self.abort is not None:
            why = self.abort()
            if why:
                self.reason, self.rule_met = why, "aborted"
                return True
        if not self.rule.enabled:
            return False
        return self.check()

    def _fold(self, batch: Any) -> None:
        requests = batch.requests
        measured = ~requests["warmup"].astype(bool)
        status = requests["status"].astype(np.int64)[measured]
        if len(status):
            self._span(requests["intended_ns"][measured])
            self.status_counts += np.bincount(status, minlength=len(Status))
            done = requests["done_ns"][measured]
            ended = np.isin(status, _ENDED) & (done >= 0)
            self.requests.add((done[ended] - requests["intended_ns"][measured][ended]) / 1e6)
        queries = batch.queries
        if len(queries["warmup"]):
            keep = ~queries["warmup"].astype(bool)
            done = queries["done_ns"][keep]
            self.query_count += int(keep.sum())
            self.query_misses += int(queries["missed"][keep].sum())
            self.queries.add((done[done >= 0] - queries["intended_ns"][keep][done >= 0]) / 1e6)

    def _span(self, intended_ns: np.ndarray) -> None:
        first, last = int(intended_ns.min()), int(intended_ns.max())
        self.first_ns = first if self.first_ns is None else min(self.first_ns, first)
        self.last_ns = last if self.last_ns is None else max(self.last_ns, last)

    @property
    def measured_s(self) -> float:
        """Seconds between the intended times of the first and last measured request seen."""
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / 1e9

    def _ratio(self, name: str) -> tuple[int, int]:
        """(hits, n) of an error-rate metric over the measured units so far."""
        counts = self.status_counts
        due = int(counts.sum() - counts[Status.CANCELLED])
        if name == "deadline_miss_rate":
            return self.query_misses, self.query_count
        if name == "timeout_rate":
            return int(counts[Status.TIMEOUT]), due
        return int(counts[_ERRORS].sum()), due

    def check(self) -> bool:
        """Apply the rule to what was seen so far; sets ``reason`` and returns True to stop."""
        rule = self.rule
        if self.measured_s < rule.min_duration_s:
            return False
        verdicts: list[tuple[str, bool | None]] = []
        precise = True
        counts = []
        for watch in self.watches:
            samples = self.queries if watch.queries else self.requests
            counts.append(samples.count)
            if samples.count < rule.min_units:
                return False
            ci = quantile_ci(samples.array(), watch.percentile, rule.confidence)
            self.intervals[watch.name] = {"estimate": ci.estimate, "low": ci.low,
                                          "high": ci.high, "n": ci.n,
                                          "relative_half_width": ci.relative_half_width}
            precise = precise and ci.relative_half_width <= rule.precision
            if watch.threshold_ms is not None and watch.op is not None:
                if math.isfinite(ci.high) and _passes(ci.high, watch.op, watch.threshold_ms):
                    verdicts.append((watch.name, True))
                elif not _passes(ci.low, watch.op, watch.threshold_ms):
                    verdicts.append((watch.name, False))
                else:
                    verdicts.append((watch.name, None))
        n = min(counts) if counts else 0
        units = "queries" if all(w.queries for w in self.watches) else "requests"
        for ratio in self.ratios:
            hits, due = self._ratio(ratio.name)
            low, _ = wilson_interval(hits, due, rule.confidence)
            if due and not _passes(low, ratio.op, ratio.threshold):
                self.reason = (f"{ratio.name} above its limit beyond doubt ({hits} of {due}, "
                               f"{100 * rule.confidence:g} % interval from {100 * low:.3g}%)")
                self.rule_met = "decided"
                return True
            if due and not _passes(hits / due, ratio.op, ratio.threshold):
                verdicts.append((ratio.name, None))  # failing so far, not beyond doubt
        if precise:
            widths = ", ".join(f"{name} ±{100 * iv['relative_half_width']:.1f}%"
                               for name, iv in self.intervals.items())
            self.reason = f"known within ±{100 * rule.precision:g}% after {n} {units} ({widths})"
            self.rule_met = "precise"
            return True
        known = [v for _, v in verdicts]
        if rule.decide and known and (False in known or all(v is True for v in known)):
            failed = [name for name, v in verdicts if v is False]
            what = f"{', '.join(failed)} fails the SLO" if failed else "every SLO is met"
            self.reason = (f"{what} beyond doubt after {n} {units} "
                           f"({100 * rule.confidence:g}% intervals)")
            self.rule_met = "decided"
            return True
        return False

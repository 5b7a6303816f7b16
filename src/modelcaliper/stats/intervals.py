"""Per-interval (by default per-second) series of request outcomes and latency percentiles.

Each request ends as a record (completion offset in seconds from the run start, latency in µs,
outcome). Records are bucketed by *completion* time, so a row says what finished during that
second. Every interval keeps its outcome counters and a small sparse histogram: by default
``INTERVAL_LAYOUT`` (1 µs to 1 h at 2 significant digits, relative error ≤ 0.8 %, 3 328 slots)
of which only the non-empty slots are stored — a few KiB per interval at most, whatever the
request rate. Pass ``layout=DEFAULT_LAYOUT`` for 3-digit interval histograms. Single records
are buffered and folded in vectorised batches.

By default the latency percentiles cover every request that ended, errors and timeouts
included (a timeout's latency is the time until it was given up on), so a failing tail is not
hidden; pass ``ok_latency_only=True`` to summarise successful requests only. Series from several
workers merge exactly; ``histogram(i)`` gives the full interval histogram (for ``stats.hlog``).

The generator's schedule lag (``record_lag_many``) is bucketed by *intended* send time instead:
its row says how late the sends due in that interval went out (p99 from a sparse histogram of
the same layout, max exact), so a generator stall shows in the second it happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from modelcaliper.stats.histogram import Histogram, Layout, values_at_percentiles

__all__ = ["INTERVAL_LAYOUT", "IntervalSeries", "Outcome"]

INTERVAL_LAYOUT = Layout(1, 3_600_000_000, 2)
"""Per-interval histograms: 1 µs to 1 h at 2 significant digits."""

_FLUSH_RECORDS = 4096


class Outcome(IntEnum):
    """How a request ended."""

    OK = 0
    ERROR = 1
    TIMEOUT = 2

    @classmethod
    def parse(cls, value: Outcome | int | str) -> Outcome:
        """An Outcome from itself, its number or its name (``"ok"``, ``"error"``, ``"timeout"``)."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"outcome must be ok, error or timeout, got {value!r}") from None
        return cls(int(value))


def _empty_slots() -> np.ndarray:
    return np.empty(0, dtype=np.int32)


def _empty_counts() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


def _fold_sparse(slots: np.ndarray, counts: np.ndarray, more_slots: np.ndarray,
                 more_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sparse histograms (ascending unique slots, counts) added into one."""
    if not len(slots):
        return more_slots, more_counts
    merged = np.concatenate((slots, more_slots))
    weights = np.concatenate((counts, more_counts))
    order = np.argsort(merged, kind="stable")
    merged, weights = merged[order], weights[order]
    unique, starts = np.unique(merged, return_index=True)
    return unique, np.add.reduceat(weights, starts)


@dataclass
class _Interval:
    """Outcome counters, the sparse latency histogram and the schedule lag of one interval."""

    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    slots: np.ndarray = field(default_factory=_empty_slots)
    counts: np.ndarray = field(default_factory=_empty_counts)
    lag_slots: np.ndarray = field(default_factory=_empty_slots)
    lag_counts: np.ndarray = field(default_factory=_empty_counts)
    lag_max_us: float | None = None

    def add(self, slots: np.ndarray, counts: np.ndarray) -> None:
        """Fold (ascending unique slots, counts) into the sparse latency histogram."""
        self.slots, self.counts = _fold_sparse(self.slots, self.counts, slots, counts)

    def add_lag(self, slots: np.ndarray, counts: np.ndarray, max_us: float) -> None:
        """Fold a sparse schedule-lag histogram and its exact maximum in."""
        self.lag_slots, self.lag_counts = _fold_sparse(self.lag_slots, self.lag_counts, slots,
                                                       counts)
        self.lag_max_us = max_us if self.lag_max_us is None else max(self.lag_max_us, max_us)


class IntervalSeries:
    """Outcome counts and p50/p99 per interval of completion time, built incrementally."""

    def __init__(
        self,
        interval_s: float = 1.0,
        layout: Layout = INTERVAL_LAYOUT,
        ok_latency_only: bool = False,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        self.layout = layout
        self.ok_latency_only = ok_latency_only
        self._intervals: dict[int, _Interval] = {}
        self._pending: list[tuple[float, float, int]] = []

    def record(self, completion_s: float, latency_us: float, outcome: Outcome | int | str) -> None:
        """Add one finished request."""
        self._pending.append((completion_s, latency_us, int(Outcome.parse(outcome))))
        if len(self._pending) >= _FLUSH_RECORDS:
            self._flush()

    def record_many(
        self,
        completion_s: np.ndarray | Sequence[float],
        latency_us: np.ndarray | Sequence[float],
        outcomes: np.ndarray | Sequence[int] | int | Outcome,
    ) -> None:
        """Add many finished requests; ``outcomes`` is an array of Outcome codes or one code."""
        completion = np.asarray(completion_s, dtype=np.float64).ravel()
        latency = np.asarray(latency_us).ravel()
        codes = np.broadcast_to(np.asarray(outcomes, dtype=np.int64), completion.shape)
        if latency.shape != completion.shape:
            raise ValueError(f"completion_s has {completion.size} values but latency_us has "
                             f"{latency.size}")
        if not completion.size:
            return
        if np.isnan(completion).any() or completion.min() < 0:
            raise ValueError("completion offsets must be ≥ 0 seconds from the run start")
        if codes.min() < 0 or codes.max() > max(Outcome):
            raise ValueError("outcomes must be Outcome codes 0 (ok), 1 (error) or 2 (timeout)")
        interval = (completion // self.interval_s).astype(np.int64)
        self._add_outcomes(interval, codes)
        if self.ok_latency_only:
            keep = codes == Outcome.OK
            interval, latency = interval[keep], latency[keep]
        self._add_latencies(interval, latency)

    def _add_outcomes(self, interval: np.ndarray, codes: np.ndarray) -> None:
        keys, tallies = np.unique(interval * 3 + codes, return_counts=True)
        for key, tally in zip(keys.tolist(), tallies.tolist(), strict=True):
            self._interval(key // 3).outcomes[key % 3] += tally

    def record_lag_many(self, intended_s: np.ndarray | Sequence[float],
                        lag_us: np.ndarray | Sequence[float]) -> None:
        """Add the schedule lag of many sends, bucketed by their intended offset (seconds)."""
        intended = np.asarray(intended_s, dtype=np.float64).ravel()
        lag = np.asarray(lag_us, dtype=np.float64).ravel()
        if lag.shape != intended.shape:
            raise ValueError(f"intended_s has {intended.size} values but lag_us has {lag.size}")
        if not intended.size:
            return
        if np.isnan(intended).any() or intended.min() < 0:
            raise ValueError("intended offsets must be ≥ 0 seconds from the run start")
        interval = (intended // self.interval_s).astype(np.int64)
        for owner, slots, counts, part in self._sparse_by_interval(interval, lag):
            self._interval(owner).add_lag(slots, counts, float(part.max()))

    def _add_latencies(self, interval: np.ndarray, latency: np.ndarray) -> None:
        for owner, slots, counts, _ in self._sparse_by_interval(interval, latency):
            self._interval(owner).add(slots, counts)

    def _sparse_by_interval(self, interval: np.ndarray, values_us: np.ndarray) -> Any:
        """Per interval index: (index, ascending slots, their counts, the raw values)."""
        if not interval.size:
            return
        # Same rounding and clamping as Histogram.record_many (clamps are not counted here).
        values = np.rint(values_us) if values_us.dtype.kind == "f" else values_us
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ValueError("cannot record NaN latencies")
        values = np.clip(values, 0, self.layout.highest_value).astype(np.int64)
        keys = interval * self.layout.length + self.layout.index_of(values)
        order = np.argsort(keys, kind="stable")
        keys, raw = keys[order], values_us[order]
        owners = keys // self.layout.length
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            owner = int(owners[start])
            slots, counts = np.unique(keys[start:end] - owner * self.layout.length,
                                      return_counts=True)
            yield owner, slots.astype(np.int32), counts.astype(np.int64), raw[start:end]

    def _interval(self, index: int) -> _Interval:
        found = self._intervals.get(index)
        if found is None:
            found = self._intervals[index] = _Interval()
        return found

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            rows = np.array(pending, dtype=np.float64)
            self.record_many(rows[:, 0], rows[:, 1], rows[:, 2].astype(np.int64))

    def merge(self, other: IntervalSeries) -> None:
        """Add another series (same interval and layout), e.g. from another worker, exactly."""
        if (other.interval_s, other.layout, other.ok_latency_only) != (
                self.interval_s, self.layout, self.ok_latency_only):
            raise ValueError("cannot merge interval series with different interval_s, layout "
                             "or ok_latency_only")
        self._flush()
        other._flush()
        for index, theirs in other._intervals.items():
            mine = self._interval(index)
            mine.outcomes += theirs.outcomes
            if len(theirs.slots):
                mine.add(theirs.slots.copy(), theirs.counts.copy())
            if theirs.lag_max_us is not None:
                mine.add_lag(theirs.lag_slots.copy(), theirs.lag_counts.copy(),
                             theirs.lag_max_us)

    def __len__(self) -> int:
        """Number of intervals from the first to the last one with any record."""
        self._flush()
        if not self._intervals:
            return 0
        return max(self._intervals) - min(self._intervals) + 1

    def histogram(self, index: int) -> Histogram:
        """The full latency histogram of interval ``index`` (empty if nothing ended then)."""
        self._flush()
        found = self._intervals.get(index)
        hist = Histogram(self.layout)
        if found is not None and len(found.slots):
            hist.counts[found.slots] = found.counts
        return hist

    def rows(self, percentiles: Sequence[float] = (50, 99)) -> list[dict[str, Any]]:
        """One dict per interval, gaps included, from the first to the last non-empty one.

        Keys: ``start_s``, ``count``, ``ok``, ``errors``, ``timeouts``, ``p50_us``/``p99_us``
        (one ``p<q>_us`` per requested percentile, ``None`` when the interval has no latency),
        and ``lag_p99_us``/``lag_max_us`` (``None`` when no send was due in the interval).
        """
        self._flush()
        if not self._intervals:
            return []
        names = [f"p{q:g}_us".replace(".", "_") for q in percentiles]
        out = []
        for index in range(min(self._intervals), max(self._intervals) + 1):
            found = self._intervals.get(index) or _Interval()
            ok, errors, timeouts = found.outcomes.tolist()
            row: dict[str, Any] = {"start_s": index * self.interval_s,
                                   "count": ok + errors + timeouts, "ok": ok,
                                   "errors": errors, "timeouts": timeouts}
            if len(found.slots):
                values = values_at_percentiles(self.layout, found.slots, found.counts,
                                                percentiles).tolist()
            else:
                values = [None] * len(names)
            row.update(zip(names, values, strict=True))
            row["lag_p99_us"] = row["lag_max_us"] = None
            if found.lag_max_us is not None:
                p99 = int(values_at_percentiles(self.layout, found.lag_slots,
                                                found.lag_counts, (99,))[0])
                # A slot's upper edge can pass the largest value in it; the max is exact.
                row["lag_p99_us"] = min(p99, found.lag_max_us)
                row["lag_max_us"] = found.lag_max_us
            out.append(row)
        return out

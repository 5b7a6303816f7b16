"""The shared core of arrival schedules: the protocol, input checks and chunked generation.

Every schedule yields its offsets from a ``_generate(end_s, rng, chunk)`` stream of sorted
arrays; ``ChunkedSchedule`` turns that stream into ``iter_arrivals`` (bounded chunks, cut at
``max_count``) and ``arrivals`` (one array). See ``modelcaliper.load.schedule`` for the processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.units import parse_duration

__all__ = [
    "DEFAULT_CHUNK",
    "ChunkedSchedule",
    "Schedule",
    "evenly",
    "number",
    "positive",
    "seconds",
]

DEFAULT_CHUNK = 65536
"""Offsets per array yielded by ``iter_arrivals`` unless told otherwise (512 KiB of float64)."""


@runtime_checkable
class Schedule(Protocol):
    """An arrival process: offsets in seconds at which requests are intended to be sent."""

    def arrivals(
        self, duration_s: float | None, rng: np.random.Generator, max_count: int | None = None
    ) -> np.ndarray:
        """All intended send offsets within the bounds, sorted, as float64 seconds."""
        ...

    def iter_arrivals(
        self,
        duration_s: float | None,
        rng: np.random.Generator,
        max_count: int | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> Iterator[np.ndarray]:
        """The same offsets as ``arrivals``, as consecutive arrays of at most ``chunk`` items."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the process and its parameters."""
        ...


def number(value: Any, name: str) -> float:
    """A finite float from a number or numeric text, or a UsageError naming ``name``."""
    if isinstance(value, bool):
        raise UsageError(f"{name} must be a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    return result


def positive(value: Any, name: str) -> float:
    """A float that must be > 0; the error says so with the value given."""
    checked = number(value, name)
    if checked <= 0:
        raise UsageError(f"{name} must be > 0, got {value}")
    return checked


def seconds(value: Any, name: str) -> float:
    """A positive duration in seconds from ``2s``/``250ms`` text or a plain number."""
    duration_s = parse_duration(value, name) if isinstance(value, str) else number(value, name)
    if duration_s <= 0:
        raise UsageError(f"{name} must be > 0, got {value}")
    return duration_s


def _count_below(span_s: float, rate_per_s: float) -> int:
    """How many k ≥ 0 satisfy k / rate_per_s < span_s (floating point checked both ways)."""
    if span_s <= 0 or rate_per_s <= 0:
        return 0
    n = math.ceil(span_s * rate_per_s)
    while n > 0 and (n - 1) / rate_per_s >= span_s:
        n -= 1
    while n / rate_per_s < span_s:
        n += 1
    return n


def _bounds(
    natural_s: float | None, duration_s: float | None, max_count: int | None
) -> tuple[float, int | None]:
    """The end offset and count limit of one generation, validated."""
    if duration_s is not None:
        duration_s = number(duration_s, "duration_s")
        if duration_s < 0:
            raise UsageError(f"duration_s must be ≥ 0, got {duration_s}")
    if max_count is not None and (
        isinstance(max_count, bool) or int(max_count) != max_count or max_count < 0
    ):
        raise UsageError(f"max_count must be a whole number ≥ 0, got {max_count!r}")
    end_s = math.inf if duration_s is None else duration_s
    if natural_s is not None:
        end_s = min(end_s, natural_s)
    if math.isinf(end_s) and max_count is None:
        raise UsageError("an open-ended arrival process needs a duration or a request count")
    return end_s, None if max_count is None else int(max_count)


class ChunkedSchedule:
    """Shared ``arrivals``/``iter_arrivals`` over a subclass's ``_generate`` chunk stream."""

    @property
    def natural_duration_s(self) -> float | None:
        """The schedule's own length in seconds, or None if it runs until told to stop."""
        return None

    def _generate(
        self, end_s: float, rng: np.random.Generator, chunk: int
    ) -> Iterator[np.ndarray]:
        """Sorted offsets below ``end_s`` in arrays of about ``chunk`` items (subclasses)."""
        raise NotImplementedError

    def iter_arrivals(
        self,
        duration_s: float | None,
        rng: np.random.Generator,
        max_count: int | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> Iterator[np.ndarray]:
        """Intended send offsets as consecutive sorted arrays of at most ``chunk`` items."""
        if chunk < 1:
            raise UsageError(f"chunk must be ≥ 1, got {chunk}")
        end_s, limit = _bounds(self.natural_duration_s, duration_s, max_count)
        if limit is not None:
            chunk = max(1, min(chunk, limit))
        remaining = limit
        for part in self._generate(end_s, rng, chunk):
            if remaining is not None and len(part) >= remaining:
                if remaining:
                    yield part[:remaining]
                return
            if len(part):
                yield part
            if remaining is not None:
                remaining -= len(part)

    def arrivals(
        self, duration_s: float | None, rng: np.random.Generator, max_count: int | None = None
    ) -> np.ndarray:
        """All intended send offsets within the bounds, sorted, as float64 seconds."""
        end_s, limit = _bounds(self.natural_duration_s, duration_s, max_count)
        # Fill one buffer sized from the expected count (grown if a burst overshoots it) rather
        # than concatenating chunks: at tens of millions of offsets the extra copy is what costs.
        rate_per_s = float(getattr(self, "mean_rate_per_s", 0.0))
        expected = rate_per_s * end_s if math.isfinite(end_s) else math.inf
        capacity = expected * 1.05 + 10.0 * math.sqrt(expected) + DEFAULT_CHUNK
        if limit is not None:
            capacity = min(capacity, limit)
        out = np.empty(int(capacity), dtype=np.float64)
        filled = 0
        for part in self.iter_arrivals(duration_s, rng, max_count):
            if filled + len(part) > len(out):
                grown = np.empty(max(2 * len(out), filled + len(part)), dtype=np.float64)
                grown[:filled] = out[:filled]
                out = grown
            out[filled : filled + len(part)] = part
            filled += len(part)
        return out[:filled] if filled < len(out) else out


def evenly(start_s: float, end_s: float, rate_per_s: float, chunk: int) -> Iterator[np.ndarray]:
    """Offsets ``start_s + k / rate_per_s`` below ``end_s`` (unbounded if end_s is inf)."""
    total = None if math.isinf(end_s) else _count_below(end_s - start_s, rate_per_s)
    k = 0
    while total is None or k < total:
        stop = k + chunk if total is None else min(k + chunk, total)
        part = np.arange(k, stop, dtype=np.float64) / rate_per_s
        if start_s:
            part += start_s
        yield part
        k = stop

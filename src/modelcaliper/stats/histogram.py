"""An HDR-style log-linear histogram of integer latencies in microseconds.

Values are recorded as integer **microseconds**: the default range is 1 µs to 1 h
(3 600 000 000 µs) at 3 significant digits. Microseconds rather than nanoseconds because the
network latencies measured here are never meaningful below 1 µs, and it keeps every value
exactly representable. The bucket layout is HdrHistogram's, so counts arrays can be exchanged
with its tools (``stats.hlog``): values below 2 048 get their own slot; above that, each power
of two is split into 1 024 equal sub-buckets, so a slot's width is at most 1/1 024 of its
lowest value — a relative error ≤ 0.098 % (< 0.1 %). The 23 552 int64 counts take 184 KiB.

Values outside the range are **clamped and counted**: a negative value is recorded as 0 and
counted in ``clamped_low``; a value above ``highest_value`` is recorded as ``highest_value``
and counted in ``clamped_high``. Clamped values are part of ``count`` and every statistic.

Percentiles follow HdrHistogram's ``getValueAtPercentile``: the rank is
``ceil(nextafter(q, -inf) / 100 × count)`` (at least 1), i.e. the nearest-rank definition
(numpy's ``method="inverted_cdf"``), and the answer is the *highest* value equivalent to the
slot holding that rank — an upper bound within 0.1 % of the exact sample quantile — except
for q = 0, which answers the *lowest* equivalent value. ``min`` and ``max`` likewise report the
lowest / highest equivalent value of the first / last non-empty slot, and ``mean`` / ``stdev``
weight each slot by its middle value, as HdrHistogram does. An empty histogram answers 0 to
all of them (check ``count``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from modelcaliper.errors import DataError

__all__ = ["DEFAULT_LAYOUT", "Bucket", "Histogram", "Layout", "values_at_percentiles"]

_RECORD_SLICE = 1 << 20
_MAGIC = b"MCHG"
_FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBHqqqq")


@dataclass(frozen=True)
class Layout:
    """The value range and precision of a histogram, and HdrHistogram's bucket arithmetic."""

    lowest_value: int = 1
    highest_value: int = 3_600_000_000
    significant_digits: int = 3
    unit_magnitude: int = field(init=False, compare=False, repr=False)
    half_magnitude: int = field(init=False, compare=False, repr=False)
    half_count: int = field(init=False, compare=False, repr=False)
    sub_bucket_mask: int = field(init=False, compare=False, repr=False)
    bucket_count: int = field(init=False, compare=False, repr=False)
    length: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        lowest, highest, digits = self.lowest_value, self.highest_value, self.significant_digits
        if not 0 <= digits <= 5:
            raise ValueError(f"significant_digits must be 0..5, got {digits}")
        if lowest < 1 or highest < 2 * lowest or highest > 2**53:
            raise ValueError(f"need 1 ≤ lowest_value, 2 × lowest_value ≤ highest_value ≤ 2**53, "
                             f"got {lowest} and {highest}")
        # Slots below 2 × 10^digits are one unit wide; round that count up to a power of two.
        single_unit_magnitude = (2 * 10**digits - 1).bit_length()
        half_magnitude = max(single_unit_magnitude, 1) - 1
        unit_magnitude = lowest.bit_length() - 1
        sub_bucket_count = 1 << (half_magnitude + 1)
        buckets, smallest_untrackable = 1, sub_bucket_count << unit_magnitude
        while smallest_untrackable <= highest:
            smallest_untrackable <<= 1
            buckets += 1
        derived = {
            "unit_magnitude": unit_magnitude,
            "half_magnitude": half_magnitude,
            "half_count": sub_bucket_count // 2,
            "sub_bucket_mask": (sub_bucket_count - 1) << unit_magnitude,
            "bucket_count": buckets,
            "length": (buckets + 1) * (sub_bucket_count // 2),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Counts-array slot of each value (int64 values already within 0..highest_value)."""
        # Bit length of (v | mask) via frexp: exact, since values stay below 2**53.
        bits = np.frexp((values | self.sub_bucket_mask).astype(np.float64))[1]
        bucket = bits.astype(np.int64) - (self.unit_magnitude + self.half_magnitude + 1)
        sub = values >> (bucket + self.unit_magnitude)
        return (bucket << self.half_magnitude) + sub

    def index_of_value(self, value: int) -> int:
        """Counts-array slot of one in-range integer value."""
        bucket = (value | self.sub_bucket_mask).bit_length() - (
            self.unit_magnitude + self.half_magnitude + 1)
        return (bucket << self.half_magnitude) + (value >> (bucket + self.unit_magnitude))

    def _bucket_and_low(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index, dtype=np.int64)
        bucket = (index >> self.half_magnitude) - 1
        sub = (index & (self.half_count - 1)) + self.half_count
        below = bucket < 0
        sub = np.where(below, sub - self.half_count, sub)
        bucket = np.where(below, 0, bucket)
        return bucket, sub << (bucket + self.unit_magnitude)

    def lowest_at(self, index: np.ndarray | int) -> np.ndarray:
        """Lowest value that lands in each slot."""
        return self._bucket_and_low(np.asarray(index))[1]

    def highest_at(self, index: np.ndarray | int) -> np.ndarray:
        """Highest value that lands in each slot (HdrHistogram's highestEquivalentValue)."""
        bucket, low = self._bucket_and_low(np.asarray(index))
        return low + (np.int64(1) << (bucket + self.unit_magnitude)) - 1

    def median_at(self, index: np.ndarray | int) -> np.ndarray:
        """Middle value of each slot (HdrHistogram's medianEquivalentValue)."""
        bucket, low = self._bucket_and_low(np.asarray(index))
        return low + ((np.int64(1) << (bucket + self.unit_magnitude)) >> 1)


DEFAULT_LAYOUT = Layout()
"""1 µs to 1 h at 3 significant digits."""


class Bucket(NamedTuple):
    """One non-empty slot: values ``low``..``high`` (both inclusive) seen ``count`` times."""

    low: int
    high: int
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose


def values_at_percentiles(
    layout: Layout, indices: np.ndarray, counts: np.ndarray, percentiles: Sequence[float]
) -> np.ndarray:
    """HdrHistogram's value at each percentile (0..100) for slots ``indices`` (ascending)."""
    q = np.asarray(percentiles, dtype=np.float64)
    if q.size and (np.isnan(q).any() or q.min() < 0 or q.max() > 100):
        raise ValueError(f"percentiles must be within 0..100, got {list(np.atleast_1d(q))}")
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1]) if len(cumulative) else 0
    if total == 0:
        return np.zeros(q.shape, dtype=np.int64)
    # Step one ulp down so that e.g. 99.9 % of 1000 is rank 999, not 1000 by roundoff.
    requested = np.clip(np.nextafter(q, -np.inf), 0.0, 100.0)
    ranks = np.maximum(np.ceil(requested * total / 100.0), 1.0)
    slots = indices[np.searchsorted(cumulative, ranks, side="left")]
    return np.where(q == 0.0, layout.lowest_at(slots), layout.highest_at(slots))


class Histogram:
    """Counts of integer microsecond values in HdrHistogram's log-linear slots; mergeable."""

    __slots__ = ("clamped_high", "clamped_low", "counts", "layout")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, layout: Layout = DEFAULT_LAYOUT) -> None:
        self.layout = layout
        self.counts = np.zeros(layout.length, dtype=np.int64)
        self.clamped_low = 0
        self.clamped_high = 0

    @classmethod
    def from_counts(cls, counts: np.ndarray, layout: Layout = DEFAULT_LAYOUT) -> Histogram:
        """A histogram holding a copy of ``counts`` (a prefix of the slot array is enough)."""
        counts = np.asarray(counts)
        if counts.ndim != 1 or len(counts) > layout.length:
            raise ValueError(f"counts must be 1-D with at most {layout.length} slots")
        if len(counts) and counts.min() < 0:
            raise ValueError("counts must not be negative")
        hist = cls(layout)
        hist.counts[: len(counts)] = counts
        return hist

    def record(self, value: float, count: int = 1) -> None:
        """Add ``count`` occurrences of one value (rounded to an integer, clamped to the range)."""
        v = int(round(value))
        if v < 0:
            self.clamped_low += count
            v = 0
        elif v > self.layout.highest_value:
            self.clamped_high += count
            v = self.layout.highest_value
        self.counts[self.layout.index_of_value(v)] += count

    def record_many(self, values: np.ndarray | Sequence[float]) -> None:
        """Add every value of an array (floats are rounded to integers; NaN is refused)."""
        values = np.asarray(values)
        if values.dtype.kind == "f":
            if np.isnan(values).any():
                raise ValueError("cannot record NaN latencies")
        elif values.dtype.kind not in "iub":
            raise TypeError(f"record_many needs numbers, got an array of {values.dtype}")
        values = values.ravel()
        highest = self.layout.highest_value
        for start in range(0, len(values), _RECORD_SLICE):
            part = values[start : start + _RECORD_SLICE]
            if part.dtype.kind == "f":
                part = np.rint(part)
            low, high = part.min(), part.max()
            if low < 0 or high > highest:
                self.clamped_low += int(np.count_nonzero(part < 0))
                self.clamped_high += int(np.count_nonzero(part > highest))
                part = np.clip(part, 0, highest)
            slots = self.layout.index_of(part.astype(np.int64, copy=False))
            self.counts += np.bincount(slots, minlength=self.layout.length)

    def merge(self, other: Histogram) -> None:
        """Add another histogram of the same layout into this one, exactly."""
        if other.layout != self.layout:
            raise ValueError(f"cannot merge histograms of different layouts: "
                             f"{self.layout} and {other.layout}")
        self.counts += other.counts
        self.clamped_low += other.clamped_low
        self.clamped_high += other.clamped_high

    @classmethod
    def merged(cls, histograms: Iterable[Histogram], layout: Layout = DEFAULT_LAYOUT) -> Histogram:
        """A new histogram holding the sum of ``histograms`` (empty if there are none)."""
        total = cls(layout)
        for hist in histograms:
            total.merge(hist)
        return total

    def copy(self) -> Histogram:
        """An independent copy."""
        twin = Histogram(self.layout)
        twin.counts[:] = self.counts
        twin.clamped_low, twin.clamped_high = self.clamped_low, self.clamped_high
        return twin

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        """Slot indices (ascending) and counts of the non-empty slots."""
        indices = np.flatnonzero(self.counts)
        return indices, self.counts[indices]

    @property
    def count(self) -> int:
        """Number of values recorded, clamped ones included."""
        return int(self.counts.sum())

    @property
    def nbytes(self) -> int:
        """Memory taken by the counts array."""
        return int(self.counts.nbytes)

    @property
    def min(self) -> int:
        """Lowest value equivalent to the smallest recorded value (0 if empty)."""
        indices = np.flatnonzero(self.counts)
        return int(self.layout.lowest_at(int(indices[0]))) if len(indices) else 0

    @property
    def max(self) -> int:
        """Highest value equivalent to the largest recorded value (0 if empty)."""
        indices = np.flatnonzero(self.counts)
        return int(self.layout.highest_at(int(indices[-1]))) if len(indices) else 0

    @property
    def mean(self) -> float:
        """Mean with each slot at its middle value (0.0 if empty)."""
        indices, counts = self.nonzero()
        total = counts.sum()
        if total == 0:
            return 0.0
        return float(np.dot(self.layout.median_at(indices).astype(np.float64), counts) / total)

    @property
    def stdev(self) -> float:
        """Population standard deviation with each slot at its middle value (0.0 if empty)."""
        indices, counts = self.nonzero()
        total = counts.sum()
        if total == 0:
            return 0.0
        deviation = self.layout.median_at(indices).astype(np.float64) - self.mean
        return float(np.sqrt(np.dot(deviation * deviation, counts) / total))

    def percentile(self, q: float) -> int:
        """The value at percentile ``q`` (0..100) with HdrHistogram's semantics."""
        return int(self.percentiles([q])[0])

    def percentiles(self, qs: Sequence[float]) -> np.ndarray:
        """The values at several percentiles at once, as an int64 array."""
        indices, counts = self.nonzero()
        return values_at_percentiles(self.layout, indices, counts, qs)

    def iter_buckets(self) -> Iterator[Bucket]:
        """The non-empty slots in ascending order, for charts."""
        indices, counts = self.nonzero()
        lows, highs = self.layout.lowest_at(indices), self.layout.highest_at(indices)
        for low, high, count in zip(lows.tolist(), highs.tolist(), counts.tolist(), strict=True):
            yield Bucket(low, high, count)

    def to_bytes(self) -> bytes:
        """A compact binary form: a small versioned header and the zlib-compressed counts."""
        indices = np.flatnonzero(self.counts)
        used = int(indices[-1]) + 1 if len(indices) else 0
        layout = self.layout
        header = _HEADER.pack(_MAGIC, _FORMAT_VERSION, layout.significant_digits, 0,
                              layout.lowest_value, layout.highest_value,
                              self.clamped_low, self.clamped_high)
        return header + zlib.compress(self.counts[:used].astype("<i8").tobytes(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> Histogram:
        """The histogram ``to_bytes`` wrote; DataError if the bytes are not one."""
        if len(data) < _HEADER.size:
            raise DataError(f"histogram bytes: {len(data)} bytes is shorter than the header")
        magic, version, digits, _, lowest, highest, low, high = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise DataError(f"histogram bytes: bad magic {magic!r}, expected {_MAGIC!r}")
        if version != _FORMAT_VERSION:
            raise DataError(f"histogram bytes: format version {version} is not supported")
        try:
            layout = Layout(lowest, highest, digits)
        except ValueError as exc:
            raise DataError(f"histogram bytes: {exc}") from None
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(data[_HEADER.size :], layout.length * 8 + 1)
        except zlib.error as exc:
            raise DataError(f"histogram bytes: counts do not decompress ({exc})") from None
        if len(raw) % 8 or len(raw) > layout.length * 8 or inflater.unconsumed_tail:
            raise DataError(f"histogram bytes: {len(raw)} bytes of counts do not fit the layout")
        counts = np.frombuffer(raw, dtype="<i8")
        if len(counts) and counts.min() < 0:
            raise DataError("histogram bytes: negative counts")
        hist = cls.from_counts(counts, layout)
        hist.clamped_low, hist.clamped_high = low, high
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.layout == other.layout and self.clamped_low == other.clamped_low
                and self.clamped_high == other.clamped_high
                and bool(np.array_equal(self.counts, other.counts)))

    def __repr__(self) -> str:
        return (f"Histogram(count={self.count}, min={self.min}, p50={self.percentile(50)}, "
                f"p99={self.percentile(99)}, max={self.max})")

    def summary(self) -> dict[str, Any]:
        """count, min, mean, stdev, p50/p90/p99/p99.9 and max as a JSON-ready dict."""
        p50, p90, p99, p999 = self.percentiles([50, 90, 99, 99.9]).tolist()
        return {"count": self.count, "min_us": self.min, "mean_us": self.mean,
                "stdev_us": self.stdev, "p50_us": p50, "p90_us": p90, "p99_us": p99,
                "p999_us": p999, "max_us": self.max, "clamped_low": self.clamped_low,
                "clamped_high": self.clamped_high}

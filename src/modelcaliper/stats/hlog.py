"""HdrHistogram interval logs (``.hlog``): write them for HdrHistogram's tools, and read them back.

A log is text::

    #[Histogram log format version 1.3]
    #[StartTime: 1714564800.000 (seconds since epoch), Wed May 01 12:00:00 UTC 2024]
    #[BaseTime: 1714564800.000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    0.000,1.000,12.287,HISTFAAAAC...

Each interval line holds its start (seconds after BaseTime), its length, its maximum divided
by ``max_value_unit_ratio`` (default 1000: our values are µs, so the column reads in ms), and
the base64 of the histogram's **V2 compressed encoding**:

    compressed:  int32 cookie 0x1c849314 | int32 length of what follows | zlib deflate of —
    encoding:    int32 cookie 0x1c849313 | int32 payload length in bytes
                 | int32 normalizing index offset (0) | int32 significant digits
                 | int64 lowest discernible value | int64 highest trackable value
                 | float64 integer-to-double conversion ratio (1.0) | payload

all big-endian. (The 0x10 bit of each cookie marks the variable-length payload.) The payload
is the counts array up to the last non-empty slot as signed 64-bit values, each ZigZag-mapped
(n ≥ 0 → 2n, n < 0 → −2n − 1) and written as little-endian base-128 groups of 7 bits with a
continuation bit — except that a 9th byte, if reached, carries a full 8 bits, so no value takes
more than 9 bytes. A run of k ≥ 2 empty slots is written as the single value −k. On the wire
the counts are in logical order, so the normalizing offset needs no undoing when reading.

When replaying such a log with HdrHistogram's ``HistogramLogProcessor``, pass
``-outputValueUnitRatio 1000`` to print milliseconds from our microsecond values.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np

from modelcaliper.errors import DataError
from modelcaliper.stats.histogram import Histogram, Layout

__all__ = [
    "HlogInterval",
    "HlogLog",
    "HlogWriter",
    "decode_histogram",
    "encode_histogram",
    "read_hlog",
    "write_hlog",
]

_ENCODING_COOKIE = 0x1C849303 | 0x10
_COMPRESSED_COOKIE = 0x1C849304 | 0x10
_ENCODING_HEADER = struct.Struct(">iiiiqqd")
_COMPRESSED_HEADER = struct.Struct(">ii")
_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TIME_NOTE = re.compile(r"#\[(StartTime|BaseTime):\s*([0-9.eE+-]+)")


def _tokens(counts: np.ndarray) -> np.ndarray:
    """The V2 value stream of a counts prefix: counts, with runs of ≥ 2 zeros as −run length."""
    zero = counts == 0
    run_start = zero & np.concatenate(([True], ~zero[:-1]))
    starts = np.flatnonzero(~zero | run_start)
    lengths = np.diff(np.append(starts, len(counts)))
    return np.where(zero[starts], np.where(lengths > 1, -lengths, 0), counts[starts])


def _zigzag_leb128(values: np.ndarray) -> bytes:
    """ZigZag + LEB128-64b9B bytes of int64 ``values``, vectorised."""
    zz = ((values << 1) ^ (values >> 63)).view(np.uint64)
    nbytes = np.ones(len(zz), dtype=np.int64)
    for k in range(1, 9):
        nbytes += zz >= np.uint64(1 << (7 * k))
    grid = np.empty((len(zz), 9), dtype=np.uint8)
    for j in range(8):
        group = ((zz >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        grid[:, j] = group | np.where(j < nbytes - 1, 0x80, 0).astype(np.uint8)
    grid[:, 8] = (zz >> np.uint64(56)).astype(np.uint8)
    return grid[np.arange(9) < nbytes[:, None]].tobytes()


def _read_leb128(payload: bytes) -> np.ndarray:
    """The int64 values of a ZigZag + LEB128-64b9B byte stream."""
    data = np.frombuffer(payload, dtype=np.uint8)
    if not len(data):
        return np.empty(0, dtype=np.int64)
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if len(ends) and ends[-1] == len(data) - 1 and (ends - starts).max() < 8:
        shifts = (np.arange(len(data)) - np.repeat(starts, ends - starts + 1)) * 7
        groups = (data & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
        zz = np.add.reduceat(groups, starts)
    else:
        zz = np.array(_read_leb128_slowly(payload), dtype=np.uint64)
    return ((zz >> np.uint64(1)) ^ (np.uint64(0) - (zz & np.uint64(1)))).view(np.int64)


def _read_leb128_slowly(payload: bytes) -> list[int]:
    """Byte-by-byte decoding, for streams with 9-byte values or a truncated end."""
    values, pos = [], 0
    while pos < len(payload):
        value = 0
        for i in range(9):
            if pos >= len(payload):
                raise DataError("hlog histogram: payload ends in the middle of a value")
            byte = payload[pos]
            pos += 1
            if i == 8:
                value |= byte << 56
                break
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                break
        values.append(value)
    return values


def encode_histogram(hist: Histogram) -> bytes:
    """HdrHistogram's V2 compressed encoding of ``hist`` (base64 it for a log line)."""
    indices = np.flatnonzero(hist.counts)
    used = int(indices[-1]) + 1 if len(indices) else 0
    payload = _zigzag_leb128(_tokens(hist.counts[:used])) if used else b""
    layout = hist.layout
    header = _ENCODING_HEADER.pack(_ENCODING_COOKIE, len(payload), 0, layout.significant_digits,
                                   layout.lowest_value, layout.highest_value, 1.0)
    deflated = zlib.compress(header + payload, 9)
    return _COMPRESSED_HEADER.pack(_COMPRESSED_COOKIE, len(deflated)) + deflated


def decode_histogram(data: bytes) -> Histogram:
    """The histogram of a V2 compressed encoding; DataError if it is not one."""
    if len(data) < _COMPRESSED_HEADER.size:
        raise DataError("hlog histogram: too short for a compressed histogram header")
    cookie, length = _COMPRESSED_HEADER.unpack_from(data)
    if cookie & ~0xF0 != _COMPRESSED_COOKIE & ~0xF0:
        raise DataError(f"hlog histogram: cookie {cookie:#x} is not a V2 compressed histogram "
                        f"({_COMPRESSED_COOKIE:#x})")
    if length != len(data) - _COMPRESSED_HEADER.size:
        raise DataError(f"hlog histogram: header says {length} compressed bytes, "
                        f"found {len(data) - _COMPRESSED_HEADER.size}")
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(data[_COMPRESSED_HEADER.size :], _ENCODING_HEADER.size)
        if len(head) < _ENCODING_HEADER.size:
            raise DataError("hlog histogram: inflated data is shorter than its header")
        cookie, payload_len, _, digits, lowest, highest, _ = _ENCODING_HEADER.unpack(head)
        if cookie & ~0xF0 != _ENCODING_COOKIE & ~0xF0:
            raise DataError(f"hlog histogram: inner cookie {cookie:#x} is not a V2 encoding")
        try:
            layout = Layout(lowest, highest, digits)
        except ValueError as exc:
            raise DataError(f"hlog histogram: unusable settings ({exc})") from None
        if not 0 <= payload_len <= layout.length * 9:
            raise DataError(f"hlog histogram: payload length {payload_len} does not fit the layout")
        payload = inflater.decompress(inflater.unconsumed_tail, payload_len)
    except zlib.error as exc:
        raise DataError(f"hlog histogram: does not inflate ({exc})") from None
    if len(payload) < payload_len:
        raise DataError(f"hlog histogram: payload has {len(payload)} of {payload_len} bytes")
    tokens = _read_leb128(payload)
    step = np.where(tokens < 0, -tokens, 1)
    position = np.cumsum(step) - step
    if len(step) and int(position[-1] + step[-1]) > layout.length:
        raise DataError(f"hlog histogram: counts run past the layout's {layout.length} slots")
    hist = Histogram(layout)
    keep = tokens > 0
    hist.counts[position[keep]] = tokens[keep]
    return hist


@dataclass(frozen=True)
class HlogInterval:
    """One interval of a log: start (seconds after BaseTime), length, histogram, tag."""

    start_s: float
    length_s: float
    histogram: Histogram
    tag: str | None = None


@dataclass
class HlogLog:
    """A parsed log: its StartTime/BaseTime (epoch seconds, if noted), comments, intervals."""

    start_time_s: float | None = None
    base_time_s: float | None = None
    comments: list[str] = field(default_factory=list)
    intervals: list[HlogInterval] = field(default_factory=list)


def _java_date(epoch_s: float) -> str:
    """A UTC time as Java's ``Date.toString`` prints it, independent of the locale."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return (f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:02d} "
            f"{moment:%H:%M:%S} UTC {moment.year}")


class HlogWriter:
    """Writes an interval log to a text stream: header once, then one line per interval."""

    def __init__(self, stream: IO[str], max_value_unit_ratio: float = 1000.0) -> None:
        self.stream = stream
        self.max_value_unit_ratio = max_value_unit_ratio

    def write_header(
        self, start_time_s: float, base_time_s: float | None = None, comment: str | None = None
    ) -> None:
        """Format version, optional comment, StartTime, BaseTime and the legend line."""
        base_time_s = start_time_s if base_time_s is None else base_time_s
        lines = ["#[Histogram log format version 1.3]"]
        if comment:
            lines += [f"#{line}" for line in comment.splitlines()]
        lines.append(f"#[StartTime: {start_time_s:.3f} (seconds since epoch), "
                     f"{_java_date(start_time_s)}]")
        lines.append(f"#[BaseTime: {base_time_s:.3f} (seconds since epoch)]")
        lines.append(_LEGEND)
        self.stream.write("\n".join(lines) + "\n")

    def write_interval(
        self, start_s: float, length_s: float, hist: Histogram, tag: str | None = None
    ) -> None:
        """One interval line; ``start_s`` is seconds after the BaseTime."""
        blob = base64.b64encode(encode_histogram(hist)).decode("ascii")
        line = f"{start_s:.3f},{length_s:.3f},{hist.max / self.max_value_unit_ratio:.3f},{blob}"
        if tag is not None:
            if not tag or re.search(r"[,\s]", tag):
                raise ValueError(f"hlog tag must be non-empty without commas or spaces: {tag!r}")
            line = f"Tag={tag},{line}"
        self.stream.write(line + "\n")


def write_hlog(
    path: str | Path,
    intervals: Iterable[HlogInterval | tuple[float, float, Histogram]],
    start_time_s: float,
    comment: str | None = None,
    max_value_unit_ratio: float = 1000.0,
) -> None:
    """Write a whole log file from intervals whose starts are seconds after ``start_time_s``."""
    with open(path, "w", encoding="ascii", newline="\n") as stream:
        writer = HlogWriter(stream, max_value_unit_ratio)
        writer.write_header(start_time_s, comment=comment)
        for item in intervals:
            interval = item if isinstance(item, HlogInterval) else HlogInterval(*item)
            writer.write_interval(interval.start_s, interval.length_s, interval.histogram,
                                  interval.tag)


def read_hlog(path: str | Path) -> HlogLog:
    """Parse an interval log; DataError naming the file and line for anything malformed."""
    log = HlogLog()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read hlog file ({exc})") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith('"StartTimestamp"'):
            continue
        if line.startswith("#"):
            note = _TIME_NOTE.match(line)
            if note is None:
                log.comments.append(line[1:])
            elif note.group(1) == "StartTime":
                log.start_time_s = float(note.group(2))
            else:
                log.base_time_s = float(note.group(2))
            continue
        tag = None
        if line.startswith("Tag="):
            tag, _, line = line[4:].partition(",")
        fields = line.split(",")
        if len(fields) != 4:
            raise DataError(f"{path}:{line_no}: expected start,length,max,histogram; "
                            f"got {len(fields)} fields")
        try:
            start_s, length_s = float(fields[0]), float(fields[1])
            blob = base64.b64decode(fields[3], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise DataError(f"{path}:{line_no}: {exc}") from None
        try:
            hist = decode_histogram(blob)
        except DataError as exc:
            raise DataError(f"{path}:{line_no}: {exc}") from None
        log.intervals.append(HlogInterval(start_s, length_s, hist, tag))
    return log

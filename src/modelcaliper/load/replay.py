"""Read request timestamps from a file so that a recorded traffic shape can be replayed.

Accepted layouts:

* **CSV** — the column named ``timestamp``, ``ts`` or ``time`` (any case), or else the first
  column; a header row is recognised because its cell is not a timestamp.
* **JSON lines** (``.jsonl``, ``.ndjson``, ``.json``, or any file whose first character is
  ``{``) — one object per line with a ``timestamp`` or ``ts`` field (``time`` also works).

Each timestamp is either a number or ISO-8601 text (``2024-05-01T12:00:00.250Z``; text without
a zone is read as UTC). One file uses one kind. Numbers are epoch (or relative) times whose unit
is told apart by the magnitude of the largest absolute value, unless given explicitly:

    below 1e11  → seconds       (epoch seconds stay below 1e11 until the year 5138)
    below 1e14  → milliseconds  (epoch milliseconds have been above 1e11 since 1973)
    below 1e17  → microseconds
    otherwise   → nanoseconds

So small relative offsets in milliseconds would be read as seconds: pass ``unit="ms"`` then.
Timestamps must not decrease from one line to the next; blank lines are skipped. Offsets are
rebased to start at 0 (subtracting exactly, in integers where the file has integers).
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelcaliper.errors import DataError, UsageError
from modelcaliper.load._pacing import ChunkedSchedule, positive

__all__ = ["UNIT_SCALES_S", "Replay", "load_replay_offsets", "read_timestamps"]

UNIT_SCALES_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
"""Seconds per unit for the explicit ``unit`` choices (``auto`` picks one by magnitude)."""

_COLUMNS = ("timestamp", "ts", "time")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _auto_unit(largest: float) -> str:
    """The unit of numeric epoch timestamps judged by their largest magnitude."""
    if largest < 1e11:
        return "s"
    if largest < 1e14:
        return "ms"
    if largest < 1e17:
        return "us"
    return "ns"


def _parse_one(raw: object) -> int | float | datetime | None:
    """A number or an aware datetime from one cell, or None if it is neither."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return raw if math.isfinite(raw) else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _csv_cells(path: Path, handle: Iterator[str]) -> Iterator[tuple[int, object]]:
    """(line number, raw cell) for each data row of a CSV file."""
    reader = csv.reader(handle)
    column: int | None = None
    for row in reader:
        if not row or all(not cell.strip() for cell in row):
            continue
        if column is None:
            names = [cell.strip().lower() for cell in row]
            named = next((names.index(n) for n in _COLUMNS if n in names), None)
            if named is not None:
                column = named
                continue
            column = 0
            if _parse_one(row[0]) is None:
                continue  # a header without a recognised name: use its first column
        if column >= len(row):
            raise DataError(f"{path}:{reader.line_num}: row has no column {column + 1}")
        yield reader.line_num, row[column]


def _json_cells(path: Path, handle: Iterator[str]) -> Iterator[tuple[int, object]]:
    """(line number, raw field) for each object of a JSON-lines file."""
    for line_no, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object per line")
        key = next((k for k in _COLUMNS if k in record), None)
        if key is None:
            raise DataError(f"{path}:{line_no}: no 'timestamp' or 'ts' field")
        yield line_no, record[key]


def read_timestamps(path: str | Path, unit: str = "auto") -> np.ndarray:
    """Timestamps of a replay file in seconds relative to its first one, validated."""
    path = Path(path)
    if unit not in ("auto", *UNIT_SCALES_S):
        raise UsageError(f"--replay-unit must be one of auto, s, ms, us, ns; got {unit!r}")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.read(1)
            handle.seek(0)
            is_json = path.suffix.lower() in _JSON_SUFFIXES or first == "{"
            cells = _json_cells(path, handle) if is_json else _csv_cells(path, handle)
            rebased, kind, magnitude = _collect(path, cells)
    except OSError as exc:
        raise DataError(f"{path}: cannot read replay file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: replay file is not UTF-8 text") from None
    if not rebased:
        raise DataError(f"{path}: no timestamps found (expected a CSV column named "
                        "timestamp/ts/time, or JSON lines with a 'timestamp' or 'ts' field)")
    if kind == "iso":
        return np.asarray(rebased, dtype=np.float64) * 1e-6
    scale_s = UNIT_SCALES_S[_auto_unit(magnitude) if unit == "auto" else unit]
    return np.asarray(rebased, dtype=np.float64) * scale_s


def _collect(
    path: Path, cells: Iterator[tuple[int, object]]
) -> tuple[list[int | float], str, float]:
    """Values rebased to the first one (microseconds for ISO text), their kind ("iso" or
    "number") and the largest raw magnitude, checking that they never decrease."""
    rebased: list[int | float] = []
    kind = ""
    first: int | float | datetime | None = None
    previous: int | float | datetime | None = None
    previous_line = 0
    for line_no, raw in cells:
        value = _parse_one(raw)
        if value is None:
            raise DataError(
                f"{path}:{line_no}: timestamp {raw!r} is neither a number nor an ISO-8601 time"
            )
        this_kind = "iso" if isinstance(value, datetime) else "number"
        if kind and this_kind != kind:
            raise DataError(f"{path}:{line_no}: mixes ISO-8601 and numeric timestamps")
        kind = this_kind
        if previous is not None and value < previous:  # type: ignore[operator]
            raise DataError(f"{path}:{line_no}: timestamp {raw!r} is earlier than the one on "
                            f"line {previous_line}; replay files must be sorted by time")
        if first is None:
            first = value
        if isinstance(value, datetime):
            rebased.append((value - first) // _MICROSECOND)  # type: ignore[operator]
        else:
            rebased.append(value - first)  # type: ignore[operator]
        previous, previous_line = value, line_no
    magnitude = 0.0
    if kind == "number":
        # Sorted, so the largest magnitude is at one end.
        magnitude = float(max(abs(first), abs(previous)))  # type: ignore[arg-type]
    return rebased, kind, magnitude


_MICROSECOND = timedelta(microseconds=1)


@functools.lru_cache(maxsize=8)
def _cached_offsets(path: str, unit: str, mtime_ns: int, size_bytes: int) -> np.ndarray:
    offsets = read_timestamps(path, unit)
    offsets.flags.writeable = False
    return offsets


def load_replay_offsets(path: str | Path, unit: str = "auto") -> np.ndarray:
    """Read-only offsets of a replay file, re-read only when the file changes."""
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read replay file ({exc.strerror or exc})") from None
    return _cached_offsets(str(path), unit, stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class Replay(ChunkedSchedule):
    """Arrivals replayed from a file of timestamps, rebased to 0 and divided by ``speed``.

    See ``modelcaliper.load.replay`` for the accepted CSV / JSON-lines layouts and how epoch
    seconds, milliseconds, microseconds and nanoseconds are told apart (``unit="auto"``).
    """

    path: str
    speed: float = 1.0
    unit: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "speed", positive(self.speed, "speed"))

    def offsets(self) -> np.ndarray:
        """Every offset of the file (read-only array), already divided by ``speed``."""
        offsets = load_replay_offsets(self.path, self.unit)
        if self.speed == 1.0:
            return offsets
        scaled = offsets / self.speed
        scaled.flags.writeable = False
        return scaled

    @property
    def natural_duration_s(self) -> float:
        """From the first timestamp to just past the last one, at ``speed``."""
        offsets = self.offsets()
        return float(np.nextafter(offsets[-1], np.inf))

    @property
    def mean_rate_per_s(self) -> float:
        """Arrivals per second over the file's span (0 for a single timestamp)."""
        offsets = self.offsets()
        span_s = float(offsets[-1])
        return (len(offsets) - 1) / span_s if span_s > 0 else 0.0

    def _generate(self, end_s: float, rng: np.random.Generator, chunk: int) -> Iterator[np.ndarray]:
        offsets = self.offsets()
        stop = int(np.searchsorted(offsets, end_s, side="left"))
        for start in range(0, stop, chunk):
            yield offsets[start : min(start + chunk, stop)]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the process and its parameters."""
        offsets = self.offsets()
        return {"arrival": "replay", "path": self.path, "speed": self.speed, "unit": self.unit,
                "count": len(offsets), "duration_s": float(offsets[-1]),
                "mean_rate_per_s": self.mean_rate_per_s}

"""Parse and format quantities with units: link rates, durations, sizes, integer lists.

Every parser takes the flag (or config key) it is reading so that its error can tell the
user exactly what to type instead: ``--link must look like 100mbit or 1gbit, got 'fast'``.
Multipliers are decimal (``k`` = 1000) except for sizes spelled with ``i`` (``KiB`` = 1024).
"""

from __future__ import annotations

import math
import re

from modelcaliper.errors import UsageError

__all__ = [
    "format_bytes",
    "format_link_rate",
    "parse_duration",
    "parse_int_list",
    "parse_link_rate",
    "parse_size",
]

_NUMBER = r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exp>[+-]?[0-9]+))?"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[^\s0-9.].*?)?\s*$")

_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BIT_UNITS = {"bit", "bits", "bps", "bit/s", "bits/s", "b/s"}
_DURATION_S = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def _split(text: str | float | int) -> tuple[float, str] | None:
    """The number and the unit text of a quantity, or None if it is not one."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return (float(text), "") if math.isfinite(text) else None
    match = _QUANTITY.match(str(text))
    if match is None:
        return None
    value = float(match.group("num")) * 10.0 ** int(match.group("exp") or 0)
    return value, (match.group("unit") or "")


def parse_link_rate(text: str | float | int, flag: str = "--link") -> float:
    """Bits per second from ``1gbit``, ``100mbit``, ``10 Mbps``, ``1 Gbit/s`` or a plain number."""
    problem = f"{flag} must look like 100mbit or 1gbit, got {str(text)!r}"
    parts = _split(text)
    if parts is None:
        raise UsageError(problem)
    value, unit = parts
    if re.fullmatch(r"[kKmMgGtT]?B(?:ps|/s)?", unit) or "byte" in unit.lower():
        # "GB/s" and "MBps" are bytes; a link is rated in bits, so say so rather than guess.
        raise UsageError(f"{flag} takes bits per second (e.g. 8gbit for 1 GB/s), got {str(text)!r}")
    lower = unit.lower()
    prefix, rest = (lower[0], lower[1:]) if lower[:1] in _DECIMAL and lower[:1] else ("", lower)
    if unit and rest not in _BIT_UNITS:
        raise UsageError(problem)
    bits_per_s = value * _DECIMAL[prefix]
    if bits_per_s <= 0:
        raise UsageError(f"{flag} must be above zero, got {str(text)!r}")
    return bits_per_s


def parse_duration(text: str | float | int, flag: str = "--duration") -> float:
    """Seconds from ``250ms``, ``2s``, ``1.5m``, ``100us`` or a plain number of seconds."""
    parts = _split(text)
    if parts is None or parts[1].lower() not in _DURATION_S and parts[1] not in _DURATION_S:
        raise UsageError(f"{flag} must look like 250ms, 2s or 1m, got {str(text)!r}")
    value, unit = parts
    if value < 0:
        raise UsageError(f"{flag} must not be negative, got {str(text)!r}")
    return value * _DURATION_S.get(unit, _DURATION_S.get(unit.lower(), 1.0))


def parse_size(text: str | float | int, flag: str = "--size") -> int:
    """Bytes from ``64mb``, ``512KiB``, ``1.5GB`` or a plain number of bytes."""
    problem = f"{flag} must look like 512kb, 64mb or 1gib, got {str(text)!r}"
    parts = _split(text)
    if parts is None:
        raise UsageError(problem)
    value, unit = parts
    match = re.fullmatch(r"(?P<prefix>[kmgt]?)(?P<binary>i?)(?:b|bytes?)?", unit.lower())
    if match is None or (match.group("binary") and not match.group("prefix")):
        raise UsageError(problem)
    prefix = match.group("prefix")
    if match.group("binary"):
        multiplier = 1024 ** " kmgt".index(prefix)
    else:
        multiplier = _DECIMAL[prefix]
    size_bytes = round(value * multiplier)
    if size_bytes < 0:
        raise UsageError(problem)
    return size_bytes


def parse_int_list(
    text: str | int | list[int], flag: str = "--batch-size", minimum: int | None = 1
) -> list[int]:
    """Integers from ``5,25`` (or ``5 25``), each checked against ``minimum``."""
    if isinstance(text, int) and not isinstance(text, bool):
        items = [str(text)]
    elif isinstance(text, list):
        items = [str(t) for t in text]
    else:
        items = [t for t in re.split(r"[,\s]+", str(text).strip()) if t]
    if not items:
        raise UsageError(
            f"{flag} must be a comma-separated list of integers like 5,25, got {str(text)!r}"
        )
    values: list[int] = []
    for item in items:
        try:
            values.append(int(item))
        except ValueError:
            raise UsageError(
                f"{flag} must be a comma-separated list of integers like 5,25, got {str(text)!r}"
            ) from None
    if minimum is not None:
        for value in values:
            if value < minimum:
                raise UsageError(f"{flag} must be ≥ {minimum}, got {value}")
    return values


def format_link_rate(bits_per_s: float) -> str:
    """A link rate as people write it: ``1 Gbit/s``, ``100 Mbit/s``, ``2.5 Gbit/s``."""
    for scale, name in ((1e12, "Tbit/s"), (1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bits_per_s >= scale:
            return f"{bits_per_s / scale:.4g} {name}"
    return f"{bits_per_s:.4g} bit/s"


def format_bytes(size_bytes: float) -> str:
    """A byte count with decimal prefixes: ``812 B``, ``14.2 kB``, ``3.1 MB``."""
    if size_bytes < 1000:
        return f"{size_bytes:.0f} B"
    for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.3g} {name}"
    return f"{size_bytes:.0f} B"  # pragma: no cover - unreachable

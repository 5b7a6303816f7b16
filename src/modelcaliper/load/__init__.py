"""The load engine's building blocks: arrival schedules (pure, seeded, clock-free)."""

from __future__ import annotations

from modelcaliper.load.schedule import (
    ARRIVALS,
    DEFAULT_CHUNK,
    Bursty,
    Constant,
    Poisson,
    Replay,
    Schedule,
    Steps,
    parse_arrival,
    split_for_workers,
)

__all__ = [
    "ARRIVALS",
    "DEFAULT_CHUNK",
    "Bursty",
    "Constant",
    "Poisson",
    "Replay",
    "Schedule",
    "Steps",
    "parse_arrival",
    "split_for_workers",
]

"""Arrival schedules: when each request is meant to be sent, in seconds from the start of a run.

A schedule is a frozen value (its parameters) whose ``arrivals(duration_s, rng, max_count)`` is a
pure function of those parameters and a numpy ``Generator``: a sorted float64 array of intended
send offsets, computed before the run. There is no clock here, so a slow target can never slow
the schedule down. ``iter_arrivals`` yields the same offsets in bounded chunks for long runs;
for a given seed the concatenated chunks equal ``arrivals`` exactly, whatever the chunk size
(random draws are consumed in order and running sums are carried across chunks sequentially).

Generation stops at whichever bound comes first: ``duration_s`` (None means the schedule's own
length, which only ``Steps`` and ``Replay`` have) or ``max_count`` (None means no limit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.load._pacing import (
    DEFAULT_CHUNK,
    ChunkedSchedule,
    Schedule,
    evenly,
    number,
    positive,
    seconds,
)
from modelcaliper.load.bursty import Bursty
from modelcaliper.load.replay import Replay

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

ARRIVALS = ("constant", "poisson", "bursty", "steps", "replay")
"""The arrival process names ``parse_arrival`` accepts."""


@dataclass(frozen=True)
class Constant(ChunkedSchedule):
    """Evenly spaced arrivals at ``rate_per_s``, the first at offset 0."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_per_s", positive(self.rate_per_s, "rate_per_s"))

    @property
    def mean_rate_per_s(self) -> float:
        """Long-run arrivals per second."""
        return self.rate_per_s

    def _generate(self, end_s: float, rng: np.random.Generator, chunk: int) -> Iterator[np.ndarray]:
        return evenly(0.0, end_s, self.rate_per_s, chunk)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the process and its parameters."""
        return {"arrival": "constant", "rate_per_s": self.rate_per_s,
                "mean_rate_per_s": self.mean_rate_per_s}


@dataclass(frozen=True)
class Poisson(ChunkedSchedule):
    """A Poisson process: independent exponential gaps with mean ``1 / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate_per_s", positive(self.rate_per_s, "rate_per_s"))

    @property
    def mean_rate_per_s(self) -> float:
        """Long-run arrivals per second."""
        return self.rate_per_s

    def _generate(self, end_s: float, rng: np.random.Generator, chunk: int) -> Iterator[np.ndarray]:
        last_s = 0.0
        while True:
            offsets = rng.standard_exponential(chunk) / self.rate_per_s
            # Adding the carry to the first gap keeps the running sum sequential across chunks,
            # so the rounding (and thus every offset) does not depend on the chunk size.
            offsets[0] += last_s
            np.cumsum(offsets, out=offsets)
            if offsets[-1] >= end_s:
                yield offsets[: np.searchsorted(offsets, end_s, side="left")]
                return
            yield offsets
            last_s = float(offsets[-1])

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the process and its parameters."""
        return {"arrival": "poisson", "rate_per_s": self.rate_per_s,
                "mean_rate_per_s": self.mean_rate_per_s}

@dataclass(frozen=True)
class Steps(ChunkedSchedule):
    """Consecutive stages of ``(duration_s, rate_per_s)``, evenly spaced within each stage.

    A stage of rate 0 is a pause. The schedule lasts the sum of the stage durations; a ramp is
    written as several short stages of increasing rate.
    """

    stages: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise UsageError("stages must list at least one (duration_s, rate_per_s) pair")
        clean = []
        for i, stage in enumerate(stages):
            if len(stage) != 2:
                raise UsageError(
                    f"stage {i + 1} must be a (duration_s, rate_per_s) pair, got {stage!r}"
                )
            duration_s = positive(stage[0], f"stage {i + 1} duration_s")
            rate_per_s = number(stage[1], f"stage {i + 1} rate_per_s")
            if rate_per_s < 0:
                raise UsageError(f"stage {i + 1} rate_per_s must be ≥ 0, got {stage[1]}")
            clean.append((duration_s, rate_per_s))
        if not any(rate for _, rate in clean):
            raise UsageError("at least one stage must have a rate_per_s > 0")
        object.__setattr__(self, "stages", tuple(clean))

    @property
    def natural_duration_s(self) -> float:
        """The sum of the stage durations."""
        return math.fsum(duration_s for duration_s, _ in self.stages)

    @property
    def mean_rate_per_s(self) -> float:
        """Arrivals per second averaged over the whole schedule."""
        return math.fsum(d * r for d, r in self.stages) / self.natural_duration_s

    def _generate(self, end_s: float, rng: np.random.Generator, chunk: int) -> Iterator[np.ndarray]:
        start_s = 0.0
        for duration_s, rate_per_s in self.stages:
            if start_s >= end_s:
                return
            if rate_per_s > 0:
                stage_end_s = start_s + duration_s
                for part in evenly(start_s, stage_end_s, rate_per_s, chunk):
                    if part[-1] >= end_s:
                        yield part[: np.searchsorted(part, end_s, side="left")]
                        return
                    yield part
            start_s += duration_s

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the process and its parameters."""
        return {"arrival": "steps", "stages": [list(stage) for stage in self.stages],
                "duration_s": self.natural_duration_s, "mean_rate_per_s": self.mean_rate_per_s}

def _parse_stages(value: Any, flag: str) -> tuple[tuple[float, float], ...]:
    """Stages from ``30s@10,1m@50`` text or a sequence of (duration, rate) pairs."""
    if isinstance(value, str):
        pairs: list[tuple[Any, Any]] = []
        for item in (p.strip() for p in value.split(",")):
            duration, sep, rate = item.partition("@")
            if not sep:
                raise UsageError(
                    f"{flag} must look like 30s@10,1m@50 (duration@rps), got {value!r}"
                )
            pairs.append((duration.strip(), rate.strip()))
    elif isinstance(value, Sequence):
        pairs = [tuple(p) for p in value]  # type: ignore[misc]
    else:
        raise UsageError(f"{flag} must look like 30s@10,1m@50 (duration@rps), got {value!r}")
    stages = []
    for duration, rate in pairs:
        rate_per_s = number(rate, f"{flag} rate")
        if rate_per_s < 0:
            raise UsageError(f"{flag} rates must be ≥ 0, got {rate}")
        stages.append((seconds(duration, f"{flag} duration"), rate_per_s))
    return tuple(stages)


# Per arrival process: accepted parameters (CLI flag = "--" + name with dashes) and defaults.
_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "constant": {"rps": None},
    "poisson": {"rps": None},
    "bursty": {"rps": None, "burst_multiplier": 5.0, "burst_duration": "1s",
               "calm_duration": "9s"},
    "steps": {"steps": None},
    "replay": {"replay": None, "replay_speed": 1.0, "replay_unit": "auto"},
}


def parse_arrival(name: str, **params: Any) -> Schedule:
    """Build a schedule from CLI-style values, with errors that name the flag to fix.

    ``constant``/``poisson`` take ``rps``; ``bursty`` takes ``rps`` (the long-run mean rate),
    ``burst_multiplier``, ``burst_duration`` and ``calm_duration`` (mean sojourns, e.g. ``2s``);
    ``steps`` takes ``steps`` (``30s@10,1m@50``); ``replay`` takes ``replay`` (a path),
    ``replay_speed`` and ``replay_unit`` (auto, s, ms, us or ns).
    """
    kind = str(name).strip().lower()
    if kind not in _PARAMS:
        raise UsageError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {name!r}")
    accepted = _PARAMS[kind]
    for key in params:
        if key not in accepted:
            flags = ", ".join("--" + k.replace("_", "-") for k in accepted)
            raise UsageError(f"--{key.replace('_', '-')} does not apply to --arrival {kind} "
                             f"(it takes {flags})")
    values = {**accepted, **{k: v for k, v in params.items() if v is not None}}
    for key, value in values.items():
        if value is None:
            raise UsageError(f"--arrival {kind} needs --{key.replace('_', '-')}")
    if kind == "constant":
        return Constant(positive(values["rps"], "--rps"))
    if kind == "poisson":
        return Poisson(positive(values["rps"], "--rps"))
    if kind == "bursty":
        return Bursty.with_mean_rate(
            positive(values["rps"], "--rps"),
            positive(values["burst_multiplier"], "--burst-multiplier"),
            seconds(values["burst_duration"], "--burst-duration"),
            seconds(values["calm_duration"], "--calm-duration"),
        )
    if kind == "steps":
        return Steps(_parse_stages(values["steps"], "--steps"))
    unit = str(values["replay_unit"]).strip().lower()
    speed = positive(values["replay_speed"], "--replay-speed")
    schedule = Replay(str(Path(values["replay"])), speed, unit)
    schedule.offsets()  # read and validate the file now, not when the run starts
    return schedule


def split_for_workers(offsets: np.ndarray, n_workers: int) -> list[np.ndarray]:
    """Disjoint round-robin shares of one global schedule; together they are the whole of it.

    Worker ``i`` gets offsets ``i, i + n, i + 2n, ...``, so every share keeps the global rate
    shape at 1/n of the rate, and each share is itself sorted.
    """
    if isinstance(n_workers, bool) or int(n_workers) != n_workers or n_workers < 1:
        raise UsageError(f"n_workers must be a whole number ≥ 1, got {n_workers!r}")
    return [offsets[i :: int(n_workers)] for i in range(int(n_workers))]

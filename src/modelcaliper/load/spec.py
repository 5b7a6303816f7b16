"""What one load run asks for: the arrival process, its bounds, fan-out, limits and seeds.

``LoadSpec`` is a frozen value validated once, in its constructor, with messages that name
the flag to fix. Every field carries its unit; a field where 0 means "unbounded" (or "off")
says so. ``plan()`` turns the spec into the intended send offsets of the whole run — a pure
function of the spec and its schedule seed, computed before the clock starts.

Timeline of a run: the schedule starts at offset 0; units (single requests, or queries of
``candidates`` rows when fan-out is on) whose intended offset falls within the first
``warmup_s`` seconds are sent but excluded from the results; the measured part lasts
``duration_s`` seconds after that (or until ``max_requests`` measured units, whichever comes
first). A schedule with its own length (``steps``, ``replay``) also ends where it ends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.load.schedule import ARRIVALS, Schedule, parse_arrival

__all__ = ["ON_DEADLINE", "ON_OVERLOAD", "LoadSpec", "Plan", "query_rows"]

ON_DEADLINE = ("wait", "cancel")
"""What happens to a query's outstanding requests at its deadline."""

ON_OVERLOAD = ("queue", "drop")
"""What happens to a request due while ``max_in_flight`` requests are outstanding."""

_RATED = ("constant", "poisson", "bursty")
_MAX_SEED = 2**63 - 1
_OPEN_ENDED_COUNT = 2**62  # a count bound that never binds, for schedules cut by count only


def _whole(value: Any, flag: str, minimum: int) -> int:
    """An integer ≥ ``minimum`` (bools and fractions refused), or a UsageError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise UsageError(f"{flag} must be a whole number, got {value!r}")
    if value < minimum:
        raise UsageError(f"{flag} must be ≥ {minimum}, got {value}")
    return int(value)


def _seconds(value: Any, flag: str, *, positive: bool = False) -> float:
    """A finite number of seconds ≥ 0 (> 0 when ``positive``), or a UsageError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise UsageError(f"{flag} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else "≥ 0"
        raise UsageError(f"{flag} must be a finite duration {bound}, got {value!r}")
    return seconds


def query_rows(candidates: int, batch_size: int) -> tuple[int, ...]:
    """Rows of each model request of a query: full batches, the last one holding the rest."""
    if candidates < 1 or batch_size < 1:
        raise UsageError(f"a query needs candidates ≥ 1 and batch size ≥ 1, "
                         f"got {candidates} and {batch_size}")
    full, rest = divmod(candidates, batch_size)
    return (batch_size,) * full + ((rest,) if rest else ())


@dataclass(frozen=True)
class Plan:
    """The intended send offsets of a run's units and where its measured part starts and ends."""

    offsets_s: np.ndarray
    """Sorted intended offsets (seconds from the run start) of every unit, warm-up included."""
    warmup_units: int
    """How many of the first offsets fall within the warm-up (sent, not measured)."""
    window_s: float
    """Length of the measured part of the schedule, for rates: measured units / window_s."""

    @property
    def measured_units(self) -> int:
        """Units after the warm-up."""
        return len(self.offsets_s) - self.warmup_units


@dataclass(frozen=True)
class LoadSpec:
    """One load run's settings, validated at construction; units are in the field names."""

    arrival: str = "constant"
    """Arrival process: constant, poisson, bursty, steps or replay."""
    rate_per_s: float | None = None
    """Mean arrival rate (queries/s when ``candidates`` > 0); steps and replay carry their own."""
    arrival_params: Mapping[str, Any] = field(default_factory=dict)
    """Process parameters as ``parse_arrival`` takes them (burst_multiplier, steps, replay...)."""
    duration_s: float = 0.0
    """Measured seconds after the warm-up; 0 = unbounded (then a count or the schedule ends it)."""
    warmup_s: float = 0.0
    """Seconds at the start whose units are sent but not measured; 0 = no warm-up."""
    max_requests: int = 0
    """Measured units to send at most (queries when ``candidates`` > 0); 0 = unbounded."""
    batch_size: int = 1
    """Rows per model request."""
    candidates: int = 0
    """Rows per query, fanned out over ceil(candidates / batch_size) requests; 0 = no fan-out."""
    per_query_concurrency: int = 0
    """Requests of one query outstanding at once; 0 = unbounded (all at the intended time)."""
    deadline_s: float = 0.0
    """Query deadline counted from its intended time; 0 = none."""
    on_deadline: str = "wait"
    """At the deadline: ``wait`` lets outstanding requests finish, ``cancel`` abandons them."""
    timeout_s: float = 10.0
    """Per-request timeout, from the moment it is sent."""
    max_in_flight: int = 0
    """Requests outstanding at once across the run (per worker); 0 = unbounded."""
    on_overload: str = "queue"
    """Beyond ``max_in_flight``: ``queue`` waits in the client (latency counts it) or ``drop``."""
    connections: int = 8
    """Connections (HTTP) or channels (gRPC) per worker."""
    http2: bool = False
    """Send HTTP requests over HTTP/2 cleartext with prior knowledge (h2c) instead of HTTP/1.1."""
    workers: int = 1
    """Generator processes sharing one global schedule."""
    seed: int = 0
    """Seed of the arrival schedule."""
    data_seed: int = 0
    """Seed of the data sample (which rows feed the requests), independent of ``seed``."""
    keep_bodies: bool = False
    """Keep response bodies in the outcomes (for model checks); costs memory."""
    schedule: Schedule = field(init=False, repr=False, compare=False)
    """The arrival process built (and validated) from ``arrival``, ``rate_per_s`` and params."""

    def __post_init__(self) -> None:
        kind = str(self.arrival).strip().lower()
        if kind not in ARRIVALS:
            raise UsageError(f"--arrival must be one of {', '.join(ARRIVALS)}, "
                             f"got {self.arrival!r}")
        object.__setattr__(self, "arrival", kind)
        object.__setattr__(self, "arrival_params", dict(self.arrival_params))
        self._check_rate(kind)
        for name, flag in (("duration_s", "--duration"), ("warmup_s", "--warmup"),
                           ("deadline_s", "--deadline")):
            object.__setattr__(self, name, _seconds(getattr(self, name), flag))
        object.__setattr__(self, "timeout_s", _seconds(self.timeout_s, "--timeout", positive=True))
        for name, flag, minimum in (
            ("max_requests", "--requests", 0), ("batch_size", "--batch-size", 1),
            ("candidates", "--candidates", 0),
            ("per_query_concurrency", "--per-query-concurrency", 0),
            ("max_in_flight", "--max-in-flight", 0), ("connections", "--connections", 1),
            ("workers", "--workers", 1), ("seed", "--seed", 0), ("data_seed", "--data-seed", 0),
        ):
            object.__setattr__(self, name, _whole(getattr(self, name), flag, minimum))
        for name, flag in (("seed", "--seed"), ("data_seed", "--data-seed")):
            if getattr(self, name) > _MAX_SEED:
                raise UsageError(f"{flag} must be below 2**63, got {getattr(self, name)}")
        self._check_choices()
        self._check_fanout()
        params = dict(self.arrival_params)
        if kind in _RATED:
            params["rps"] = self.rate_per_s
        object.__setattr__(self, "schedule", parse_arrival(kind, **params))
        natural = getattr(self.schedule, "natural_duration_s", None)
        if self.duration_s == 0 and self.max_requests == 0 and natural is None:
            raise UsageError(f"--arrival {kind} runs until told to stop: give --duration "
                             "(e.g. 30s) or --requests N")
        if natural is not None and self.warmup_s >= natural:
            raise UsageError(f"--warmup {self.warmup_s:g}s leaves nothing to measure of a "
                             f"{natural:g}s schedule; shorten the warm-up")

    def _check_rate(self, kind: str) -> None:
        if kind in _RATED:
            if self.rate_per_s is None:
                raise UsageError(f"--arrival {kind} needs --rps (requests or queries per second)")
            rate = self.rate_per_s
            if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) \
                    or not math.isfinite(rate) or rate <= 0:
                raise UsageError(f"--rps must be a finite number > 0, got {rate!r}")
            object.__setattr__(self, "rate_per_s", float(rate))
        elif self.rate_per_s is not None:
            raise UsageError(f"--rps does not apply to --arrival {kind}: its rates come from "
                             f"{'--steps' if kind == 'steps' else 'the --replay file'}")

    def _check_choices(self) -> None:
        if self.on_deadline not in ON_DEADLINE:
            raise UsageError(f"--on-deadline must be wait or cancel, got {self.on_deadline!r}")
        if self.on_overload not in ON_OVERLOAD:
            raise UsageError(f"--on-overload must be queue or drop, got {self.on_overload!r}")
        if self.on_overload == "drop" and self.max_in_flight == 0:
            raise UsageError("--on-overload drop needs --max-in-flight N (what counts as overload)")

    def _check_fanout(self) -> None:
        if not self.candidates:
            for value, flag in ((self.deadline_s, "--deadline"),
                                (self.per_query_concurrency, "--per-query-concurrency")):
                if value:
                    raise UsageError(f"{flag} applies to fanned-out queries; add --candidates K")
        if self.on_deadline == "cancel" and not self.deadline_s:
            raise UsageError("--on-deadline cancel needs --candidates K and --deadline")

    # ------------------------------------------------------------------ derived values

    @property
    def fanout(self) -> bool:
        """Whether each unit is a query of ``candidates`` rows rather than one request."""
        return self.candidates > 0

    @property
    def rows_per_request(self) -> tuple[int, ...]:
        """Rows of each model request of one unit (one entry without fan-out)."""
        if not self.fanout:
            return (self.batch_size,)
        return query_rows(self.candidates, self.batch_size)

    @property
    def requests_per_unit(self) -> int:
        """Model requests per unit: ceil(candidates / batch_size) with fan-out, else 1."""
        return len(self.rows_per_request)

    @property
    def unit_rate_per_s(self) -> float:
        """Mean units (queries or requests) per second of the arrival process."""
        return float(getattr(self.schedule, "mean_rate_per_s", 0.0))

    @property
    def offered_rps(self) -> float:
        """Mean model requests per second asked for."""
        return self.unit_rate_per_s * self.requests_per_unit

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of every setting, with the schedule's own description."""
        out: dict[str, Any] = {name: getattr(self, name) for name in (
            "arrival", "rate_per_s", "duration_s", "warmup_s", "max_requests", "batch_size",
            "candidates", "per_query_concurrency", "deadline_s", "on_deadline", "timeout_s",
            "max_in_flight", "on_overload", "connections", "http2", "workers", "seed", "data_seed",
            "keep_bodies")}
        out["arrival_params"] = {k: (str(v) if not isinstance(v, (int, float)) else v)
                                 for k, v in self.arrival_params.items()}
        out["schedule"] = self.schedule.describe()
        return out

    # ------------------------------------------------------------------ the plan

    def plan(self) -> Plan:
        """Every unit's intended offset: a pure function of the spec and ``seed``."""
        natural = getattr(self.schedule, "natural_duration_s", None)
        end_s = self.warmup_s + self.duration_s if self.duration_s else None
        if end_s is not None and natural is not None:
            end_s = min(end_s, natural)
        if end_s is None and natural is not None:
            end_s = natural
        rng = np.random.default_rng(self.seed)
        limit = _OPEN_ENDED_COUNT if end_s is None else None
        parts: list[np.ndarray] = []
        warmup_units = measured = 0
        count_bound = False
        for part in self.schedule.iter_arrivals(end_s, rng, limit):
            if self.max_requests:
                in_warmup = int(np.searchsorted(part, self.warmup_s, side="left"))
                room = self.max_requests - measured
                if len(part) - in_warmup >= room:
                    part = part[: in_warmup + room]
                    count_bound = True
                measured += len(part) - in_warmup
            parts.append(part)
            if count_bound:
                break
        offsets = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
        warmup_units = int(np.searchsorted(offsets, self.warmup_s, side="left"))
        if count_bound or end_s is None:
            last_s = float(offsets[-1]) if len(offsets) else self.warmup_s
            gap_s = 1.0 / self.unit_rate_per_s if self.unit_rate_per_s > 0 else 0.0
            window_s = last_s + gap_s - self.warmup_s
            if end_s is not None:
                window_s = min(window_s, end_s - self.warmup_s)
        else:
            window_s = end_s - self.warmup_s
        if len(offsets) - warmup_units == 0:
            raise UsageError("the schedule has no request after the warm-up; lengthen "
                             "--duration or raise --rps")
        return Plan(offsets, warmup_units, max(window_s, 1e-9))

"""The ground truth's laws: service-time distributions, the stall model, per-request records.

Pure values with no I/O, shared by the ground-truth server (``testing.groundtruth``, whose
docstring describes the stall model in full) and the tests and benchmarks that analyse it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.units import parse_duration

__all__ = ["GroundTruthRecords", "ServiceTime", "Stalls"]


@dataclass(frozen=True)
class ServiceTime:
    """A service-time law: ``constant`` (``scale_s``), ``exponential`` (mean) or ``lognormal``."""

    kind: str
    scale_s: float  # the constant, the exponential's mean or the lognormal's median
    sigma: float = 0.0  # the lognormal's shape (standard deviation of the log)

    @classmethod
    def parse(cls, text: str) -> ServiceTime:
        """Read ``constant:5ms``, ``exponential:mean=5ms`` or ``lognormal:median=5ms,sigma=0.5``."""
        kind, _, rest = text.strip().partition(":")
        params = dict(p.partition("=")[::2] for p in rest.split(",") if "=" in p)
        try:
            if kind == "constant" and "=" not in rest:
                return cls("constant", parse_duration(rest, "--service"))
            if kind == "exponential" and set(params) == {"mean"}:
                return cls("exponential", parse_duration(params["mean"], "--service mean"))
            if kind == "lognormal" and set(params) == {"median", "sigma"}:
                sigma = float(params["sigma"])
                median_s = parse_duration(params["median"], "--service median")
                if sigma < 0 or not math.isfinite(sigma):
                    raise UsageError(f"--service sigma must be ≥ 0, got {params['sigma']!r}")
                return cls("lognormal", median_s, sigma)
        except ValueError:
            pass
        raise UsageError("--service must look like constant:5ms, exponential:mean=5ms or "
                         f"lognormal:median=5ms,sigma=0.5, got {text!r}")

    def draw_s(self, rng: np.random.Generator) -> float:
        """One service time in seconds, consuming ``rng`` (nothing for ``constant``)."""
        if self.kind == "exponential":
            return float(rng.exponential(self.scale_s))
        if self.kind == "lognormal" and self.scale_s > 0:
            return float(rng.lognormal(math.log(self.scale_s), self.sigma))
        return self.scale_s

    def quantile_s(self, q: float) -> float:
        """The law's exact ``q``-quantile (0 < q < 1) in seconds."""
        if self.kind == "exponential":
            return -self.scale_s * math.log1p(-q)
        if self.kind == "lognormal":
            return self.scale_s * math.exp(self.sigma * statistics.NormalDist().inv_cdf(q))
        return self.scale_s

    def describe(self) -> str:
        """The text form ``parse`` reads back."""
        if self.kind == "exponential":
            return f"exponential:mean={self.scale_s * 1e3:g}ms"
        if self.kind == "lognormal":
            return f"lognormal:median={self.scale_s * 1e3:g}ms,sigma={self.sigma:g}"
        return f"constant:{self.scale_s * 1e3:g}ms"


@dataclass(frozen=True)
class Stalls:
    """Whole-server freezes of ``stall_s`` ending every ``every_s`` after the epoch (0 = none)."""

    stall_s: float = 0.0
    every_s: float = 0.0

    def __post_init__(self) -> None:
        if self.stall_s < 0 or self.every_s < 0:
            raise UsageError(f"stalls must not be negative, got {self.stall_s}s every "
                             f"{self.every_s}s")
        if self.stall_s > 0 and not self.stall_s < self.every_s:
            raise UsageError(f"--stall ({self.stall_s:g}s) must be shorter than --stall-every "
                             f"({self.every_s:g}s)")

    def resume_ns(self, t_ns: int) -> int:
        """``t_ns`` (since the epoch) if the server is running then, else when its stall ends."""
        if self.stall_s <= 0 or t_ns < 0:
            return t_ns
        every_ns = round(self.every_s * 1e9)
        end_ns = (t_ns // every_ns + 1) * every_ns  # the end of t's period
        return end_ns if t_ns >= end_ns - round(self.stall_s * 1e9) else t_ns

    def release_ns(self, arrival_ns: int, service_ns: int) -> int:
        """When a request arriving at ``arrival_ns`` is answered (see the module docstring)."""
        return self.resume_ns(self.resume_ns(arrival_ns) + service_ns)


@dataclass
class GroundTruthRecords:
    """What the server did per request, in arrival order; absolute ``perf_counter_ns`` times."""

    epoch_ns: int
    arrival_ns: np.ndarray
    service_ns: np.ndarray  # the drawn service time
    release_ns: np.ndarray  # when the model says the answer is due
    done_ns: np.ndarray  # when the answer was handed to the socket (0: never, client gone)
    request_ids: list[str]
    unrecorded: int = 0  # requests beyond the record limit

    @property
    def latency_s(self) -> np.ndarray:
        """Arrival to answer handed to the socket: the service time each request really got."""
        return (self.done_ns - self.arrival_ns) / 1e9

    @property
    def stall_wait_s(self) -> np.ndarray:
        """The part of each planned latency spent waiting for stalls to end."""
        return (self.release_ns - self.arrival_ns - self.service_ns) / 1e9

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document (``from_json`` reads it back)."""
        return {"epoch_ns": self.epoch_ns, "arrival_ns": self.arrival_ns.tolist(),
                "service_ns": self.service_ns.tolist(), "release_ns": self.release_ns.tolist(),
                "done_ns": self.done_ns.tolist(), "request_ids": self.request_ids,
                "unrecorded": self.unrecorded}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> GroundTruthRecords:
        """Records from a ``to_json`` document (the ``GET /stats`` body)."""
        arrays = {k: np.asarray(doc[k], np.int64)
                  for k in ("arrival_ns", "service_ns", "release_ns", "done_ns")}
        return cls(int(doc["epoch_ns"]), request_ids=list(doc["request_ids"]),
                   unrecorded=int(doc["unrecorded"]), **arrays)

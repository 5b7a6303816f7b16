"""The sweep's points: the product of its axes, grouped by server and put in a seeded order.

A *point* is one configuration at one rate: a wire (protocol, encoding, compression), a batch
size, a server configuration and a rate (None with ``--rps auto``: the capacity search picks
the rates). Points that share a server configuration run back to back, so the server starts
once per configuration; within a group, and across groups, the order is a seeded shuffle
(``order_seed``), so slow drift of the machine (heat, other load, caches) is spread over the
axes instead of lining up with one of them. Each point runs with its own warm-up.

Combinations that cannot work are left out and noted: a request larger than the server's
``max_batch_size`` (the server would reject every request). A plan with no point left, or
with more points than ``max_points``, is a UsageError.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError
from modelcaliper.sweep.axes import Axes, Wire, server_flags

__all__ = ["DEFAULT_MAX_POINTS", "Point", "ServerConfig", "SweepPlan", "build_plan",
           "rate_text"]

DEFAULT_MAX_POINTS = 64
"""Points a sweep may have unless ``--max-points`` says otherwise."""

_SERVER_LABELS = {"max_batch_size": "max batch {}", "batch_timeout_micros": "timeout {}us",
                  "num_batch_threads": "{} batch threads", "model_threads": "{} model threads",
                  "intra_op_threads": "{} intra-op threads",
                  "inter_op_threads": "{} inter-op threads"}


def rate_text(rate_per_s: float | None, fanout: bool) -> str:
    """``40 queries/s``, ``12.5 req/s`` or ``auto``."""
    if rate_per_s is None:
        return "auto"
    return f"{rate_per_s:.4g} {'queries/s' if fanout else 'req/s'}"


@dataclass(frozen=True)
class ServerConfig:
    """One setting of the server axes (empty: the server's defaults)."""

    settings: tuple[tuple[str, int], ...] = ()

    @property
    def key(self) -> str:
        """A short stable id, e.g. ``max_batch_size=32,batch_timeout_micros=2000``."""
        return ",".join(f"{name}={value}" for name, value in self.settings) or "default"

    @property
    def label(self) -> str:
        """What people read: ``max batch 32, timeout 2000us``."""
        return ", ".join(_SERVER_LABELS[name].format(value) for name, value in self.settings)

    def flags(self) -> list[str]:
        """The ``serve-model`` flags that set this configuration."""
        return server_flags(dict(self.settings))


@dataclass(frozen=True)
class Point:
    """One configuration at one rate, in run order (``index``)."""

    index: int
    server: ServerConfig
    wire: Wire
    batch_size: int
    rate_per_s: float | None

    @property
    def config_key(self) -> str:
        """Everything but the rate: points with the same key form one configuration's curve."""
        return f"{self.wire.label}|batch={self.batch_size}|{self.server.key}"

    def label(self, varying: Sequence[str], *, fanout: bool = False,
              with_rate: bool = False) -> str:
        """The configuration in words, naming only the axes that vary (``batch 25 + v2-grpc``)."""
        parts = []
        if "batch_size" in varying:
            parts.append(f"batch {self.batch_size}")
        wire_axes = {"protocol", "encoding", "compression"} & set(varying)
        if wire_axes:
            parts.append(self.wire.label)
        server = [_SERVER_LABELS[name].format(value) for name, value in self.server.settings
                  if name in varying]
        if server:
            parts.append(", ".join(server))
        if not parts:
            parts = [f"batch {self.batch_size}", self.wire.label]
            if self.server.settings:
                parts.append(self.server.label)
        text = " + ".join(parts)
        if with_rate:
            text += f" @ {rate_text(self.rate_per_s, fanout)}"
        return text

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the point's settings."""
        return {"protocol": self.wire.protocol, "encoding": self.wire.encoding,
                "compression": self.wire.compression, "batch_size": self.batch_size,
                "rps": self.rate_per_s, "server": dict(self.server.settings)}


@dataclass(frozen=True)
class SweepPlan:
    """The points in run order, grouped by server configuration, and what was left out."""

    groups: tuple[tuple[ServerConfig, tuple[Point, ...]], ...]
    varying: tuple[str, ...]
    skipped: tuple[str, ...]
    seed: int
    fanout: bool = False

    @property
    def points(self) -> tuple[Point, ...]:
        """Every point, in run order."""
        return tuple(p for _, points in self.groups for p in points)

    def label(self, point: Point, *, with_rate: bool = False) -> str:
        """A point's label with this plan's varying axes."""
        return point.label(self.varying, fanout=self.fanout, with_rate=with_rate)

    def describe(self) -> list[dict[str, Any]]:
        """The plan as JSON-ready rows, in run order."""
        return [{"index": p.index, "label": self.label(p, with_rate=True),
                 "config_key": p.config_key, **p.describe()} for p in self.points]


def _too_large(batch_size: int, candidates: int, settings: Mapping[str, int]) -> bool:
    limit = settings.get("max_batch_size")
    rows = min(batch_size, candidates) if candidates else batch_size
    return limit is not None and rows > limit


def build_plan(axes: Axes, *, seed: int = 0, candidates: int = 0,
               max_points: int = DEFAULT_MAX_POINTS) -> SweepPlan:
    """Every point of the axes' product, in seeded order (see the module docstring)."""
    rng = np.random.default_rng(seed)
    names = list(axes.server)
    servers = [ServerConfig(tuple(zip(names, values, strict=True)))
               for values in itertools.product(*(axes.server[n] for n in names))]
    rates: tuple[float | None, ...] = axes.rates if axes.rates is not None else (None,)
    skipped: list[str] = []
    groups: list[list[tuple[Wire, int, float | None]]] = []
    for server in servers:
        settings = dict(server.settings)
        combos = []
        for wire, batch, rate in itertools.product(axes.wires, axes.batch_sizes, rates):
            if _too_large(batch, candidates, settings):
                note = (f"batch {batch} with max batch {settings['max_batch_size']} left out: "
                        "the server rejects requests larger than its max batch size")
                if note not in skipped:
                    skipped.append(note)
                continue
            combos.append((wire, batch, rate))
        groups.append(combos)
    total = sum(len(g) for g in groups)
    if total == 0:
        raise UsageError("the sweep has no point left: " + "; ".join(skipped))
    if total > max_points:
        raise UsageError(f"the sweep has {total} points (more than --max-points {max_points}); "
                         "narrow an axis or raise --max-points")
    order = [int(i) for i in rng.permutation(len(servers))]
    planned: list[tuple[ServerConfig, tuple[Point, ...]]] = []
    index = 0
    for g in order:
        combos = groups[g]
        if not combos:
            continue
        points = []
        for c in rng.permutation(len(combos)):
            wire, batch, rate = combos[int(c)]
            points.append(Point(index, servers[g], wire, batch, rate))
            index += 1
        planned.append((servers[g], tuple(points)))
    return SweepPlan(tuple(planned), axes.varying(), tuple(skipped), seed, candidates > 0)

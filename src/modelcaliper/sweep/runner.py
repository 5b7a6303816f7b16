"""One ``caliper sweep``: every point a normal stored run, one server start per configuration.

    validate every point ─► [link up] ─► for each server configuration (seeded order):
        start the server ─► for each point (seeded order):
            client cost (first run of a configuration) ─► run (warm-up, early stop) ─► store
        stop the server
    ─► configurations, capacity curves, recommendation ─► sweep.json ─► [link down]

Each point goes through ``runner.execute`` exactly like ``caliper run --target URL``: the
same phases, the same run folder and database row, its SLO as the run's assertions, tagged
``sweep`` and with the sweep's id. The server is the sweep's: the embedded server started
on free ports (inside the rate-limited namespace with ``--link``) once per server
configuration, or the ``--target`` given. Early stopping is the run's live progress sink
(``early_stop.EarlyStop``). With ``--rps auto`` each configuration's points are the steps of
a capacity search (``capacity.search_capacity``).

Failures are data: a server that cannot start marks its configuration's points failed; a
server that dies during a point stops that point (within half a second), marks it failed,
and is started again for the next one (up to ``max_restarts`` times per configuration). A
Ctrl-C stops the sweep after the point in progress has been stored; ``sweep.json`` is
rewritten after every point, so a stopped sweep still has everything measured so far.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelcaliper.errors import CaliperError, TargetError
from modelcaliper.runner import ProgressSink
from modelcaliper.sweep.axes import Axes
from modelcaliper.sweep.capacity import SearchSettings, Step, search_capacity
from modelcaliper.sweep.early_stop import EarlyStop, StopRule, watches_for
from modelcaliper.sweep.plan import Point, ServerConfig, SweepPlan
from modelcaliper.sweep.results import (
    PointResult,
    early_stop_record,
    figures_of,
    link_figures,
)
from modelcaliper.sweep.server import SweepServer

__all__ = ["SweepObserver", "SweepOutcome", "SweepSettings", "point_args", "run_sweep",
           "validate_points"]

_PLACEHOLDER = {"rest": "http://127.0.0.1:9", "grpc": "127.0.0.1:9"}


@dataclass(frozen=True)
class SweepSettings:
    """Everything a sweep needs, validated by ``cli.sweep``."""

    plan: SweepPlan
    axes: Axes
    run_args: argparse.Namespace
    """``caliper run`` options shared by every point (the run parser's dests)."""
    table: Mapping[str, argparse.Action]
    slo: tuple[Any, ...]
    rule: StopRule
    search: SearchSettings
    model_path: Path | None = None
    model_name: str | None = None
    model_version: str | None = None
    target_url: str | None = None
    """A server someone else runs (None: the embedded server, started by the sweep)."""
    server_args: tuple[str, ...] = ()
    cpus: Any = None
    ready_timeout_s: float = 120.0
    required_rps: float | None = None
    link_bits_per_s: float | None = None
    sweep_root: Path = Path("runs/sweeps")
    tags: tuple[str, ...] = ()
    max_restarts: int = 2

    @property
    def fanout(self) -> bool:
        """Whether points send fanned-out queries (``--candidates``)."""
        return self.plan.fanout


class SweepObserver:
    """What a sweep tells its display (and tests): each server, each point, notes."""

    def sweep_started(self, sweep_id: str, settings: SweepSettings, folder: Path) -> None:
        """The sweep is about to start its first server."""

    def server_started(self, config: ServerConfig, endpoint: Any, restart: bool) -> None:
        """A server configuration's server is up (again, after a crash, when ``restart``)."""

    def point_started(self, point: Point, rate_per_s: float, step: int | None,
                      server: Any) -> None:
        """A point's run is about to start (``server`` is the sweep's server handle)."""

    def point_finished(self, result: PointResult) -> None:
        """A point's run is over and stored."""

    def note(self, text: str) -> None:
        """Something worth a line."""

    def live(self) -> ProgressSink | None:
        """A live display for each point's load, or None."""
        return None


@dataclass
class SweepOutcome:
    """How the sweep ended: its ``sweep.json`` document, its folder and the exit code."""

    document: dict[str, Any]
    folder: Path
    exit_code: int
    results: list[PointResult] = field(default_factory=list)


def _transport(protocol: str) -> str:
    return "grpc" if protocol.endswith("-grpc") else "rest"


def point_args(settings: SweepSettings, point: Point, rate_per_s: float, *, target_url: str,
               model: str, metrics_url: str | None, tags: tuple[str, ...] = ()
               ) -> argparse.Namespace:
    """The ``caliper run`` options of one point against the sweep's server."""
    a = copy.copy(settings.run_args)
    a.model_path, a.target, a.model = None, target_url, model
    a.protocol, a.encoding = point.wire.protocol, point.wire.encoding
    a.compression, a.batch_size = point.wire.compression, str(point.batch_size)
    a.rps = repr(float(rate_per_s))
    a.model_version = settings.model_version
    a.tag = [*settings.tags, *tags]
    a.assertions = [s.expression for s in settings.slo]
    a.metrics_url = None if getattr(a, "no_metrics", False) else metrics_url
    a.server_args = a.server_cpus = a.client_cpus = a.launch = a.ready_url = None
    a.no_pin = False
    a.json = a.hlog = a.junit = a.records = None
    a.quiet = True
    return a


def validate_points(settings: SweepSettings) -> None:
    """Build every point's run spec against a placeholder server: flags are checked up front."""
    from modelcaliper.config import build_spec

    for point in settings.plan.points:
        rate = point.rate_per_s or settings.search.start_rps
        args = point_args(settings, point, rate,
                          target_url=_PLACEHOLDER[_transport(point.wire.protocol)],
                          model=settings.model_name or "model", metrics_url=None,
                          tags=("sweep",))
        build_spec(args, settings.table)


class _Interrupted(Exception):
    """Ctrl-C during a point: the sweep stops after storing it."""


class _Sweep:
    """One sweep's state: settings, folder, results and capacity searches so far."""

    def __init__(self, settings: SweepSettings, observer: SweepObserver, sweep_id: str,
                 folder: Path) -> None:
        self.settings, self.observer = settings, observer
        self.sweep_id, self.folder = sweep_id, folder
        self.results: list[PointResult] = []
        self.capacities: dict[str, dict[str, Any]] = {}
        self.costs: dict[str, dict[str, Any] | None] = {}
        self.servers: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.watches, self.ratios = watches_for(settings.slo, fanout=settings.fanout)
        self.started_at = datetime.now(UTC)
        self.started_s = time.monotonic()
        self.link: Any = None
        self.link_record: dict[str, Any] | None = None

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.observer.note(text)

    # ------------------------------------------------------------------ one point

    def _cost(self, point: Point, spec: Any, server: SweepServer) -> dict[str, Any] | None:
        from modelcaliper.sweep.cost import measure_client_cost

        key = point.config_key
        if key not in self.costs:
            protocol = point.wire.protocol
            try:
                cost = measure_client_cost(spec, server.signature(protocol), server.model,
                                           server.url(protocol))
                self.costs[key] = cost.describe()
            except CaliperError as exc:
                self.costs[key] = None
                self.note(f"client cost of {self.settings.plan.label(point)} not measured: "
                          f"{exc}")
        return self.costs[key]

    def run_point(self, point: Point, rate: float, server: SweepServer,
                  step: int | None = None) -> PointResult:
        """Run one point at ``rate`` (a fixed point, or a step of a capacity search)."""
        from modelcaliper.config import build_spec
        from modelcaliper.runner import execute
        from modelcaliper.sweep.cost import process_cpu_s

        s = self.settings
        label = s.plan.label(point)
        started = time.monotonic()
        result = PointResult(point, rate, label, "failed", search_step=step)
        try:
            self._ensure_server(server)
            args = point_args(s, point, rate, target_url=server.url(point.wire.protocol),
                              model=server.model, metrics_url=server.metrics_url,
                              tags=("sweep", self.sweep_id))
            spec = build_spec(args, s.table)
            cost = self._cost(point, spec, server)
            self.observer.point_started(point, rate, step, server)
            sink = EarlyStop(s.rule, self.watches, self.ratios, inner=self.observer.live(),
                             abort=server.death)
            cpu_before = process_cpu_s(server.pid)
            link_before = self.link.sent_bytes() if self.link is not None else None
            outcome = execute(spec, progress=sink)
            cpu_after = process_cpu_s(server.pid)
            link_after = self.link.sent_bytes() if self.link is not None else None
        except _Interrupted:
            raise
        except CaliperError as exc:
            result.reason = " ".join(str(exc).split())
            result.wall_s = time.monotonic() - started
            return result
        summary = outcome.summary
        result.status, result.reason = outcome.status, outcome.reason
        if sink.rule_met == "aborted":
            result.status, result.reason = "failed", sink.reason
        result.run_id = summary.get("run_id") if summary else None
        result.folder = str(outcome.folder) if outcome.folder is not None else None
        result.verdicts = [v.to_dict() for v in outcome.verdicts]
        if summary is not None:
            server_cpu = (cpu_after - cpu_before if cpu_before is not None
                          and cpu_after is not None else None)
            client_cpu = outcome.result.cpu_s if outcome.result is not None else None
            result.figures = figures_of(summary, cost=cost, server_cpu_s=server_cpu,
                                        client_cpu_s=client_cpu, watch=self.watches[0].name)
            if link_before is not None and link_after is not None:
                result.figures.update(link_figures(summary, link_before, link_after))
        result.early = early_stop_record(sink, summary, spec.load.duration_s)
        if result.status != "completed":
            result.passed = False
        elif s.slo:
            result.passed = all(v["passed"] for v in result.verdicts)
        else:
            result.passed = not result.figures.get("error_rate")
        result.wall_s = time.monotonic() - started
        return result

    def _ensure_server(self, server: SweepServer) -> None:
        """Start the server if it is not running (first point, or after a crash)."""
        if not server.ours:
            if server.starts == 0:
                server.start()
            return
        if server.start_failure is not None:
            raise TargetError(server.start_failure)
        if server.target is not None and server.death() is None:
            return
        if server.starts > self.settings.max_restarts:
            raise TargetError(f"the server of {server.config.label or 'this configuration'} "
                              f"died {server.starts} times; not started again")
        restart = server.starts > 0
        if restart:
            self.note(f"server died ({server.death()}); starting it again")
        server.close()
        try:
            endpoint = server.start()
        except CaliperError as exc:
            server.start_failure = " ".join(str(exc).split())
            raise
        self.servers.append({"config": server.config.key, "pid": endpoint.pid,
                             "http_url": endpoint.http_url, "grpc_url": endpoint.grpc_url,
                             "restart": restart})
        self.observer.server_started(server.config, endpoint, restart)

    # ------------------------------------------------------------------ the sweep

    def _finish_point(self, result: PointResult) -> None:
        self.results.append(result)
        self.observer.point_finished(result)
        self.write("running")
        if result.status == "interrupted":
            raise _Interrupted

    def _search(self, point: Point, server: SweepServer) -> None:
        s = self.settings

        def measure(rate: float) -> Step:
            result = self.run_point(point, rate, server, step=len(steps))
            self._finish_point(result)
            step = Step(rate, bool(result.passed), result.figures.get("watched_ms"),
                        result.figures.get("queries_per_s" if s.fanout else "ok_rps"),
                        result.status == "completed", result.run_id)
            steps.append(step)
            return step

        steps: list[Step] = []
        found = search_capacity(measure, s.search)
        self.capacities[point.config_key] = found.describe()

    def run_group(self, config: ServerConfig, points: tuple[Point, ...], number: int) -> None:
        log_dir = self.folder / "servers" / f"{number}-{_slug(config.key)}"
        server = SweepServer(self.settings, config, log_dir, self.link)
        try:
            for point in points:
                if point.rate_per_s is None:
                    self._search(point, server)
                else:
                    self._finish_point(self.run_point(point, point.rate_per_s, server))
        finally:
            server.close()

    def write(self, status: str, reason: str | None = None) -> dict[str, Any]:
        from modelcaliper.sweep.document import build_document, write_document

        document = build_document(self, status, reason)
        write_document(self.folder / "sweep.json", document)
        return document


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60]


def run_sweep(settings: SweepSettings, observer: SweepObserver | None = None) -> SweepOutcome:
    """Run every point of the plan (see the module docstring); the outcome and ``sweep.json``."""
    from modelcaliper.store import new_run_id

    watcher = observer or SweepObserver()
    path = settings.model_path
    name = settings.model_name or (
        "model" if path is None else path.stem if path.is_file() else path.name)
    link = None
    try:
        if settings.link_bits_per_s is not None:  # before anything is written: it may fail
            from modelcaliper.sweep.link import RateLimitedLink

            link = RateLimitedLink(settings.link_bits_per_s)
            link.open()
        sweep_id = new_run_id(f"sweep-{name}")
        folder = settings.sweep_root / sweep_id
        folder.mkdir(parents=True, exist_ok=False)
        sweep = _Sweep(settings, watcher, sweep_id, folder)
        if link is not None:
            sweep.link, sweep.link_record = link, link.describe()
        watcher.sweep_started(sweep_id, settings, folder)
        for note in (*settings.axes.notes, *settings.plan.skipped):
            sweep.note(note)
        status, reason = "completed", None
        try:
            for number, (config, points) in enumerate(settings.plan.groups, start=1):
                sweep.run_group(config, points, number)
        except (_Interrupted, KeyboardInterrupt):
            status, reason = "interrupted", "Ctrl-C; the points measured so far are kept"
    finally:
        if link is not None:
            link.close()
    document = sweep.write(status, reason)
    exit_code = 130 if status == "interrupted" else (
        0 if document["recommendation"]["met"] else 1)
    return SweepOutcome(document, folder, exit_code, sweep.results)

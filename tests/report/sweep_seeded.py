"""Seeded ``sweep.json`` documents for the sweep view, page and report tests.

Built with the sweep's own code — ``Point``/``PointResult`` for the points, ``search_capacity``
for capacity searches, ``summarize_configs`` and ``recommend`` for the configurations and the
recommendation — from a deterministic latency model instead of measured runs, so every
figure is known in advance and the documents never change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelcaliper.sweep.axes import Wire
from modelcaliper.sweep.capacity import SearchSettings, Step, search_capacity
from modelcaliper.sweep.plan import Point, ServerConfig
from modelcaliper.sweep.recommend import recommend, summarize_configs
from modelcaliper.sweep.results import PointResult

HOSTILE_MODEL = "<script>alert(1)</script>"
HOSTILE_REASON = '<img src=x onerror="alert(2)"> died & </script>'

FIXED_ID = "20261127-101500-sweep-ranker-aaaaaa"
UNMET_ID = "20261127-111500-sweep-ranker-bbbbbb"
AUTO_ID = "20261127-121500-sweep-ranker-cccccc"
HOSTILE_ID = "20261127-131500-sweep-hostile-dddddd"

_WIRE_COST = {"v2-rest json": (3.0, 1.0, 120.0), "v2-rest binary gzip": (1.2, 0.35, 41.0),
              "v2-grpc": (1.0, 0.3, 36.0)}
"""wire label → (latency factor, client CPU factor, request bytes per row)."""


def _verdict(expression: str, metric: str, threshold: float, actual: float | None
             ) -> dict[str, Any]:
    passed = actual is not None and actual < threshold
    shown = "no value" if actual is None else f"{actual:.2f} ms"
    return {"expression": expression, "passed": passed, "actual": actual, "metric": metric,
            "op": "<", "threshold": threshold, "unit": "ms",
            "message": f"{metric} = {shown}, expected < {threshold:g} ms"}


def _figures(wire: Wire, batch: int, rate: float, rng: np.random.Generator,
             fanout: bool) -> dict[str, Any]:
    """Figures of a point from a simple queueing-like model of latency and cost."""
    latency, cpu, row_bytes = _WIRE_COST[wire.label]
    capacity = 400.0 / (latency * (1 + batch / 25))
    load = min(rate / capacity, 0.98)
    p50 = round(latency * (2 + batch / 10) / (1 - load) * (1 + 0.05 * rng.random()), 3)
    p99 = round(p50 * (2.5 + 3 * load), 3)
    encode = round(cpu * batch * 4.0, 3)
    send = round(cpu * (120 + batch * 2.0), 3)
    server = round(60 + batch * 8.0, 3)
    achieved = round(min(rate, capacity) * (0.99 + 0.01 * rng.random()), 4)
    return {"offered_rps": rate, "achieved_rps": achieved, "ok_rps": achieved,
            "queries_per_s": achieved / 4 if fanout else None, "requests": 400 + batch,
            "p50_ms": p50, "p90_ms": round(p50 * 1.8, 3), "p99_ms": p99,
            "p999_ms": round(p99 * 1.2, 3), "p99_low_ms": round(p99 * 0.95, 3),
            "p99_high_ms": round(p99 * 1.06, 3), "watched": "p99", "watched_ms": p99,
            "error_rate": 0.0, "deadline_miss_rate": None,
            "request_bytes": round(row_bytes * batch + 180), "response_bytes": 40.0 + 4 * batch,
            "rows_per_request": float(batch), "server_ms_per_request": round(server / 1e3, 4),
            "server_cpu_us_per_request": server, "server_cpu_us_per_candidate": server / batch,
            "client_cpu_us_per_request": encode + send,
            "client_cpu_us_per_candidate": (encode + send) / batch,
            "encode_us_per_request": encode, "send_receive_us_per_request": send,
            "cpu_us_per_candidate": (encode + send + server) / batch}


def _early(measured_s: float, max_s: float = 10.0) -> dict[str, Any]:
    return {"stopped_early": measured_s < max_s, "rule": "precise" if measured_s < max_s
            else None, "reason": "known within ±10%" if measured_s < max_s else None,
            "max_s": max_s, "measured_s": measured_s,
            "saved_s": max(0.0, max_s - measured_s), "intervals": {}}


def _result(point: Point, rate: float, label: str, figures: dict[str, Any],
            slo: Sequence[tuple[str, str, float]], run_id: str, *, step: int | None = None,
            failed: str | None = None) -> PointResult:
    if failed is not None:
        return PointResult(point, rate, label, "failed", failed, run_id=run_id,
                           folder=f"runs/{run_id}", passed=False, figures={},
                           early={"stopped_early": False, "rule": "aborted", "reason": failed,
                                  "max_s": 10.0, "measured_s": 1.5, "saved_s": 0.0},
                           search_step=step, wall_s=2.0)
    verdicts = [_verdict(expr, metric, limit, figures.get(f"{metric}_ms"))
                for expr, metric, limit in slo]
    return PointResult(point, rate, label, "completed", run_id=run_id,
                       folder=f"runs/{run_id}", passed=all(v["passed"] for v in verdicts),
                       verdicts=verdicts, figures=figures,
                       early=_early(3.0 + (point.index % 3)), search_step=step,
                       wall_s=4.5)


def _document(sweep_id: str, results: list[PointResult], *, slo: Sequence[str], axes: dict,
              search: SearchSettings | None = None,
              capacities: dict[str, dict[str, Any]] | None = None,
              model: str = "ranker", notes: Sequence[str] = (),
              reason: str | None = None, status: str = "completed") -> dict[str, Any]:
    """The document ``sweep.document.build_document`` writes, from these results."""
    configs = summarize_configs(results, capacities)
    measured = [r for r in results if r.early]
    timing = {"wall_s": 61.5, "runs": len(results), "server_starts": 1,
              "max_load_s": sum(r.early.get("max_s") or 0 for r in measured),
              "measured_load_s": sum(r.early.get("measured_s") or 0 for r in measured),
              "early_stop_saved_s": sum(r.early.get("saved_s") or 0 for r in measured),
              "stopped_early": sum(1 for r in measured if r.early.get("stopped_early"))}
    return {"schema": "modelcaliper.sweep/1", "sweep_id": sweep_id, "status": status,
            "reason": reason, "started_at": "2026-11-27T10:15:00.000Z",
            "updated_at": "2026-11-27T10:16:01.500Z", "wall_s": 61.5,
            "model": {"path": f"models/{model}.onnx", "name": model, "version": "1"},
            "target": {"kind": "embedded", "url": None}, "link": None, "axes": axes,
            "plan": [], "skipped": [], "notes": list(notes), "slo": list(slo),
            "watch": "p99", "stop_rule": {"enabled": True, "precision": 0.1},
            "search": search.describe() if search else None, "required_rps": None,
            "fanout": False, "unit": "req/s",
            "points": [r.describe() for r in results],
            "configs": [c.describe("p99", False) for c in configs],
            "recommendation": recommend(configs, slo=list(slo), watch="p99"),
            "servers": [], "timing": timing,
            "runs": {"runs_dir": "runs", "db": None}}


def _grid(sweep_id: str, slo: Sequence[tuple[str, str, float]], *, model: str = "ranker",
          fail: Callable[[Point, float], str | None] = lambda p, r: None,
          notes: Sequence[str] = ()) -> dict[str, Any]:
    wires = [Wire("v2-rest", "json", "none"), Wire("v2-rest", "binary", "gzip"),
             Wire("v2-grpc", None, "none")]
    batches, rates = (10, 50), (20.0, 40.0)
    rng = np.random.default_rng(7)
    varying = ("protocol", "encoding", "compression", "batch_size", "rps")
    results = []
    combos = [(w, b, r) for w in wires for b in batches for r in rates]
    for i in rng.permutation(len(combos)):
        wire, batch, rate = combos[int(i)]
        point = Point(len(results), ServerConfig(), wire, batch, rate)
        run_id = f"20261127-1015{len(results):02d}-{model[:8]}-{len(results):06x}"
        results.append(_result(point, rate, point.label(varying),
                               _figures(wire, batch, rate, rng, False), slo, run_id,
                               failed=fail(point, rate)))
    axes = {"protocol": ["v2-rest", "v2-grpc"], "encoding": ["json", "binary"],
            "compression": ["none", "gzip"], "batch_size": list(batches),
            "rps": list(rates), "server": {}, "wires": [w.label for w in wires], "notes": []}
    return _document(sweep_id, results, slo=[s[0] for s in slo], axes=axes, model=model,
                     notes=notes)


def fixed_document() -> dict[str, Any]:
    """3 wires × batch 10, 50 × 20, 40 req/s; p99<50ms; one run failed (its server died)."""
    def fail(point: Point, rate: float) -> str | None:
        if point.wire.protocol == "v2-grpc" and point.batch_size == 50 and rate == 40.0:
            return "the server process was killed by SIGKILL"
        return None

    return _grid(FIXED_ID, [("p99<50ms", "p99", 50.0)], fail=fail)


def unmet_document() -> dict[str, Any]:
    """The same grid with an SLO nothing meets: the recommendation shows the closest point."""
    return _grid(UNMET_ID, [("p99<1ms", "p99", 1.0)])


def hostile_document() -> dict[str, Any]:
    """A model name, a failure reason and a note carrying HTML."""
    def fail(point: Point, rate: float) -> str | None:
        return HOSTILE_REASON if point.batch_size == 10 and rate == 20.0 and \
            point.wire.protocol == "v2-grpc" else None

    return _grid(HOSTILE_ID, [("p99<50ms", "p99", 50.0)], model=HOSTILE_MODEL, fail=fail,
                 notes=[f"note {HOSTILE_REASON}"])


def auto_document() -> dict[str, Any]:
    """``--rps auto`` for two wires at batch 25: capacity searches, curves and knees."""
    settings = SearchSettings(start_rps=10.0, tolerance=0.1, max_steps=8)
    rng = np.random.default_rng(11)
    varying = ("protocol", "encoding")
    results: list[PointResult] = []
    capacities: dict[str, dict[str, Any]] = {}
    slo = [("p99<50ms", "p99", 50.0)]
    for index, wire in enumerate((Wire("v2-rest", "json", "none"), Wire("v2-grpc", None, "none"))):
        point = Point(index, ServerConfig(), wire, 25, None)
        steps: list[Step] = []

        def measure(rate: float, point: Point = point, steps: list[Step] = steps) -> Step:
            figures = _figures(point.wire, 25, rate, rng, False)
            run_id = f"20261127-1215{len(results):02d}-ranker-{len(results):06x}"
            result = _result(point, rate, point.label(varying), figures, slo, run_id,
                             step=len(steps))
            results.append(result)
            step = Step(rate, bool(result.passed), figures["watched_ms"],
                        figures["ok_rps"], True, run_id)
            steps.append(step)
            return step

        capacities[point.config_key] = search_capacity(measure, settings).describe()
    axes = {"protocol": ["v2-rest", "v2-grpc"], "encoding": ["json"], "compression": ["none"],
            "batch_size": [25], "rps": "auto", "server": {},
            "wires": ["v2-rest json", "v2-grpc"], "notes": []}
    return _document(AUTO_ID, results, slo=[s[0] for s in slo], axes=axes, search=settings,
                     capacities=capacities)


def all_documents() -> dict[str, dict[str, Any]]:
    """sweep id → document of every seeded sweep."""
    return {FIXED_ID: fixed_document(), UNMET_ID: unmet_document(),
            AUTO_ID: auto_document(), HOSTILE_ID: hostile_document()}


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)

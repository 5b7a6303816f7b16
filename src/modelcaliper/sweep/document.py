"""``sweep.json``: everything a view needs to draw a sweep, in one document.

    schema            "modelcaliper.sweep/1"
    sweep_id, status  completed | interrupted | running (rewritten after every point), reason
    started_at, updated_at, wall_s
    model             {path, name, version}      target {kind: embedded | existing, url}
    link              {rate_bits_per_s, rate, method, namespace, server_address, delay} | null
    axes, plan        the axes as given; every planned point in run order (label, settings)
    skipped, notes    combinations left out and why; what happened along the way
    slo, watch        the SLO expressions; the percentile the curves and early stop use
    stop_rule         early stopping's precision, confidence, minimum count
    search            the capacity search's settings (``--rps auto``) or null
    unit              "req/s" or "queries/s" (every rate below is in it)
    points            one entry per stored run: config, status, run_id, folder, passed,
                      verdicts, figures {rates, p50/p99 (with its interval), error and
                      deadline-miss rates, bytes, server ms and CPU, client CPU per request
                      and per candidate, ...}, early_stop {stopped_early, rule, reason,
                      max_s, measured_s, saved_s}
    configs           per configuration: label, sustainable rate, the run it held at and the
                      first failure, CPU per candidate, bytes per request, its
                      latency–throughput curve, and its capacity search (steps, bracket, knee)
    recommendation    met, best, headline, ranked table (with a why per row), closest
    timing            wall time, runs, server starts, measured vs maximum load time and what
                      early stopping saved

Every run it names is also in the run database (tags ``sweep`` and the sweep id), so a view
can open any point as a normal run.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.sweep.recommend import recommend, summarize_configs

__all__ = ["SCHEMA", "build_document", "write_document"]

SCHEMA = "modelcaliper.sweep/1"
"""The document's format name and version."""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_document(sweep: Any, status: str, reason: str | None = None) -> dict[str, Any]:
    """The ``sweep.json`` document of a sweep (a ``runner._Sweep``) as it stands."""
    s = sweep.settings
    watch = sweep.watches[0].name
    configs = summarize_configs(sweep.results, sweep.capacities)
    measured = [r for r in sweep.results if r.early]
    max_s = sum(r.early.get("max_s") or 0.0 for r in measured)
    measured_s = sum(r.early.get("measured_s") or 0.0 for r in measured)
    saved_s = sum(r.early.get("saved_s") or 0.0 for r in measured)
    wall_s = time.monotonic() - sweep.started_s
    return {
        "schema": SCHEMA,
        "sweep_id": sweep.sweep_id,
        "status": status,
        "reason": reason,
        "started_at": _iso(sweep.started_at),
        "updated_at": _iso(datetime.now(UTC)),
        "wall_s": round(wall_s, 3),
        "model": {"path": str(s.model_path) if s.model_path is not None else None,
                  "name": s.model_name, "version": s.model_version},
        "target": {"kind": "existing" if s.target_url else "embedded",
                   "url": s.target_url},
        "link": sweep.link_record,
        "axes": s.axes.describe(),
        "plan": s.plan.describe(),
        "skipped": list(s.plan.skipped),
        "notes": list(sweep.notes),
        "slo": [a.expression for a in s.slo],
        "watch": watch,
        "stop_rule": s.rule.describe(),
        "search": s.search.describe() if s.axes.auto else None,
        "required_rps": s.required_rps,
        "fanout": s.fanout,
        "unit": "queries/s" if s.fanout else "req/s",
        "points": [r.describe() for r in sweep.results],
        "configs": [c.describe(watch, s.fanout) for c in configs],
        "recommendation": recommend(configs, slo=[a.expression for a in s.slo], watch=watch,
                                    fanout=s.fanout, required_rps=s.required_rps),
        "servers": list(sweep.servers),
        "timing": {"wall_s": round(wall_s, 3), "runs": len(sweep.results),
                   "server_starts": len(sweep.servers), "max_load_s": round(max_s, 3),
                   "measured_load_s": round(measured_s, 3),
                   "early_stop_saved_s": round(saved_s, 3),
                   "stopped_early": sum(1 for r in measured if r.early.get("stopped_early"))},
        "runs": {"runs_dir": str(getattr(s.run_args, "runs_dir", "runs")),
                 "db": getattr(s.run_args, "db", None)},
    }


def write_document(path: Path, document: dict[str, Any]) -> None:
    """Write the document atomically (a reader sees the old one or the new one, whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2
                                       | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    os.replace(temporary, path)

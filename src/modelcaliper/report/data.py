"""The data behind the Run view: pure functions from a run folder (and its index row) to JSON.

Everything here reads pre-aggregated artifacts — the summary, the stored histograms, the
per-second intervals, the server metrics diff, the op profile — and never the raw records,
except the waterfall's slowest requests, read by a two-pass top-k (``report.slowest``). The
result is plain JSON (numbers, strings, lists, dicts), the same for the HTML report, the web
pages and ``/api/``; formatting for people happens in the templates.

Long series are cut down before they leave: histograms to log-spaced bins, percentile curves
to 41 points, intervals to ``MAX_INTERVAL_POINTS`` (consecutive seconds merged: counts
summed, p50/p99 and the schedule lag's p99/max the worst second of the window, so a spike is
never averaged away). Runs stored without the per-second schedule lag have no lag columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelcaliper.report.distributions import (
    histogram_bins,
    percentile_curve,
    percentile_table,
)
from modelcaliper.report.servermetrics import server_view
from modelcaliper.report.slowest import SLOWEST_COUNT, slowest_requests
from modelcaliper.stats.histogram import Histogram

__all__ = ["CLIENT_PARTITION", "MAX_INTERVAL_POINTS", "distribution", "downsample_intervals",
           "error_rows", "phase_breakdown", "run_view"]

MAX_INTERVAL_POINTS = 600
"""Points of an over-time chart; longer runs merge consecutive intervals."""

CLIENT_PARTITION = ("schedule_lag", "client_queue", "send", "wait", "receive")
"""Client phases that add up to a request's latency (done − intended)."""

_SERVER_NAMED = ("recv", "decode", "queue", "batch", "compute", "transform", "model", "encode")
_STATS = ("mean", "p50", "p99")


def _get(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


def distribution(hist: Histogram | None) -> dict[str, Any] | None:
    """Bins, percentile curve and labelled percentiles of one latency histogram (None if empty)."""
    if hist is None or not hist.count:
        return None
    return {"count": hist.count, "mean_ms": round(hist.mean / 1e3, 6),
            "bins": histogram_bins(hist), "curve": percentile_curve(hist),
            "table": percentile_table(hist)}


def downsample_intervals(intervals: Mapping[str, Any] | None,
                         max_points: int = MAX_INTERVAL_POINTS) -> dict[str, Any] | None:
    """The over-time series as columns, at most ``max_points`` long (see the module docstring)."""
    rows = (intervals or {}).get("rows") or []
    if not rows:
        return None
    interval_s = float(intervals.get("interval_s") or 1.0)  # type: ignore[union-attr]
    group = max(1, math.ceil(len(rows) / max_points))
    worst = ["p50_ms", "p99_ms"]
    if any(r.get("lag_max_ms") is not None for r in rows):
        worst += ["lag_p99_ms", "lag_max_ms"]
    out: dict[str, list[Any]] = {k: [] for k in ("start_s", "rate_per_s", "count", "ok",
                                                 "errors", "timeouts", *worst)}
    for first in range(0, len(rows), group):
        chunk = rows[first:first + group]
        span_s = interval_s * len(chunk)
        out["start_s"].append(chunk[0].get("start_s"))
        for key in ("count", "ok", "errors", "timeouts"):
            out[key].append(sum(int(r.get(key) or 0) for r in chunk))
        out["rate_per_s"].append(round(out["count"][-1] / span_s, 6))
        for key in worst:
            values = [r[key] for r in chunk if r.get(key) is not None]
            out[key].append(max(values) if values else None)
    return {"interval_s": interval_s, "merged": group, **out}


def _partition(phases: Mapping[str, Any]) -> list[str]:
    """Phases that add up to the latency: the server's split of the wait when it reported one."""
    if _get(phases, "total", "count"):
        named = [p for p in _SERVER_NAMED if _get(phases, p, "count")]
        if any(_get(phases, p, "mean") for p in ("transform", "model")):
            named = [p for p in named if p != "compute"]
        return ["schedule_lag", "client_queue", "network", *named]
    return [p for p in CLIENT_PARTITION if _get(phases, p, "count")]


def phase_breakdown(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """Each phase's mean/p50/p99 and its share of that statistic summed over the partition."""
    phases = summary.get("phases_ms") or {}
    if not phases:
        return None
    partition = _partition(phases)
    totals = {s: sum(float(_get(phases, p, s) or 0.0) for p in partition) for s in _STATS}
    rows = []
    for name, stats in phases.items():
        row = {"phase": name, "in_partition": name in partition,
               "side": "server" if name in (*_SERVER_NAMED, "total") else "client",
               "count": stats.get("count")}
        for stat in _STATS:
            value = stats.get(stat)
            row[stat] = value
            row[f"share_{stat}"] = (float(value) / totals[stat]
                                    if name in partition and value is not None and totals[stat]
                                    else None)
        rows.append(row)
    shares = {stat: [next(r[f"share_{stat}"] or 0.0 for r in rows if r["phase"] == p)
                     for p in partition] for stat in _STATS}
    return {"partition": partition, "totals": totals, "rows": rows, "shares": shares}


def error_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Errors by kind, most frequent first, each with its example messages."""
    kinds = summary.get("errors_by_kind") or {}
    examples = summary.get("error_examples") or {}
    failed = sum(int(v or 0) for v in kinds.values())
    rows = [{"kind": kind, "count": int(count or 0),
             "share": int(count or 0) / failed if failed else None,
             "examples": [str(e) for e in (examples.get(kind) or [])]}
            for kind, count in kinds.items()]
    return sorted(rows, key=lambda r: (-r["count"], r["kind"]))


def _payload(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    pool = summary.get("pool") or {}
    payload = summary.get("payload_bytes") or {}
    load = summary.get("load") or {}
    rows = [("encoding", pool.get("encoding"), None), ("compression", pool.get("compression"),
                                                        None),
            ("transport", pool.get("transport"), None),
            ("rows per request", load.get("batch_size"), "rows"),
            ("request body, mean", payload.get("request_mean"), "bytes"),
            ("response body, mean", payload.get("response_mean"), "bytes"),
            ("prepared requests in the pool", pool.get("requests"), None),
            ("pool size", pool.get("size_bytes"), "bytes"),
            ("pool build time", pool.get("build_s"), "s")]
    return [{"name": n, "value": v, "unit": u} for n, v, u in rows if v is not None]


def _read_profile(path: Path) -> Mapping[str, Any] | None:
    import orjson

    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, Mapping) else None


def _inside(folder: Path, name: Any) -> Path | None:
    """``name`` as a path inside ``folder`` (resolved), or None when it is elsewhere or gone."""
    if not name:
        return None
    try:
        root = folder.resolve()
        path = Path(str(name)).resolve()
        path.relative_to(root)
    except (OSError, ValueError):
        return None
    return path if path.exists() else None


def profile_files(folder: Path) -> dict[str, Path]:
    """The downloadable files of a run's op profile: ``trace`` (Chrome trace JSON, for
    Perfetto or chrome://tracing) and ``tensorboard`` (the log directory TensorBoard's profile
    plugin reads: ``profile/`` holding ``plugins/profile/<run>/*.xplane.pb``), when present."""
    document = _read_profile(folder / "profile" / "profile.json") or {}
    files: dict[str, Path] = {}
    trace = _inside(folder, document.get("trace_path"))
    if trace is not None and trace.is_file():
        files["trace"] = trace
    plugins = folder / "profile" / "plugins" / "profile"
    if plugins.is_dir() and any(plugins.rglob("*.xplane.pb")):
        files["tensorboard"] = (folder / "profile").resolve()
    return files


def _groups(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"group": g.get("group"), "share": g.get("share"), "self_us": g.get("self_us")}
            for g in list(_get(document, "summary", "groups") or [])[:12]
            if isinstance(g, Mapping)]


def _by_batch(folder: Path) -> list[dict[str, Any]]:
    """Isolated profiles kept with the run (``profile/batch_<n>/profile.json``, as
    ``caliper profile MODEL --out RUN_FOLDER/profile`` writes them), one row per batch size:
    op time per prediction and per row, the group shares, the leading op."""
    rows = []
    for path in (folder / "profile").glob("batch_*/profile.json"):
        document = _read_profile(path)
        if not document or document.get("status") != "ok":
            continue
        batch, predictions = document.get("batch_size"), document.get("predictions")
        total = _get(document, "summary", "total_us")
        per_call = total / predictions if total is not None and predictions else None
        ops = [op for op in document.get("ops") or () if isinstance(op, Mapping)]
        top = max(ops, key=lambda op: float(op.get("self_us") or 0.0), default=None)
        rows.append({"batch_size": batch, "predictions": predictions, "per_call_us": per_call,
                     "per_row_us": per_call / batch if per_call is not None and batch else None,
                     "groups": _groups(document),
                     "top_op": None if top is None else {
                         "name": top.get("name"), "group": top.get("group"),
                         "share": top.get("share")}})
    return sorted(rows, key=lambda r: (r["batch_size"] is None, r["batch_size"] or 0))


def _profile(folder: Path, batch_size: Any = None) -> dict[str, Any] | None:
    """The stored op profile (``profile/profile.json``) cut to its summary and top 20 ops, the
    per-batch-size profiles kept with the run, and which files can be downloaded."""
    document = _read_profile(folder / "profile" / "profile.json")
    by_batch = _by_batch(folder)
    if document is None:
        return {"status": "missing", "reason": "only isolated profiles", "by_batch": by_batch,
                "files": []} if by_batch else None
    if document.get("status") != "ok":
        return {"status": "missing", "reason": str(document.get("reason") or "no profile"),
                "by_batch": by_batch, "files": []}
    ops = sorted((op for op in document.get("ops") or () if isinstance(op, Mapping)),
                 key=lambda op: -float(op.get("self_us") or 0.0))[:20]
    keys = ("name", "op_type", "group", "calls", "self_us", "mean_us", "share", "input_shapes")
    files = profile_files(folder)
    return {"status": "ok", "runtime": document.get("runtime"),
            "label": document.get("label"),
            "batch_size": document.get("batch_size") or batch_size,
            "window_s": document.get("window_s"),
            "total_us": _get(document, "summary", "total_us"),
            "groups": _groups(document),
            "ops": [{k: op.get(k) for k in keys} for op in ops],
            "by_batch": by_batch,
            "files": [{"kind": kind, "path": str(path.relative_to(folder.resolve()))}
                      for kind, path in sorted(files.items())]}


def _facts(summary: Mapping[str, Any], stored: Any) -> dict[str, Any]:
    requests = summary.get("requests") or {}
    queries = summary.get("queries") or {}
    load = summary.get("load") or {}
    return {
        "rate_per_s": _get(load, "settings", "rate_per_s") or load.get("offered_rps"),
        "offered_rps": load.get("offered_rps"), "offered_qps": load.get("offered_qps"),
        "achieved_rps": _get(summary, "throughput", "achieved_rps"),
        "ok_rps": _get(summary, "throughput", "ok_rps"),
        "batch_size": load.get("batch_size"), "candidates": load.get("candidates"),
        "arrival": load.get("arrival"), "duration_s": load.get("duration_s"),
        "scheduled": requests.get("scheduled"), "ok": requests.get("ok"),
        "errors": requests.get("errors"), "timeouts": requests.get("timeouts"),
        "dropped": requests.get("dropped"), "cancelled": requests.get("cancelled"),
        "model_errors": requests.get("model_errors"),
        "latency_ms": summary.get("latency_ms"),
        "query_latency_ms": queries.get("latency_ms") if queries else None,
        "queries": queries.get("count") if queries else None,
        "deadline_ms": queries.get("deadline_ms") if queries else None,
        "deadline_misses": queries.get("deadline_misses") if queries else None,
        "error_rate": getattr(stored, "error_rate", None),
        "deadline_miss_rate": getattr(stored, "deadline_miss_rate", None),
        "p99_ci": _get(summary, "confidence", "p99_ms"),
        "schedule_lag_ms": _get(summary, "generator", "schedule_lag_ms"),
        "generator_cpu_percent": _get(summary, "generator", "cpu_percent"),
        "generator_saturated": _get(summary, "generator", "saturated"),
        "generator_message": _get(summary, "generator", "message"),
    }


def _run_header(summary: Mapping[str, Any], stored: Any, folder: Path,
                status: Mapping[str, Any] | None) -> dict[str, Any]:
    target = summary.get("target") or {}
    pool = summary.get("pool") or {}
    return {
        "run_id": getattr(stored, "run_id", None) or summary.get("run_id") or folder.name,
        "model": getattr(stored, "model", None) or target.get("model"),
        "version": getattr(stored, "model_version", None) or target.get("version"),
        "status": getattr(stored, "status", None) or (status or {}).get("status"),
        "reason": getattr(stored, "reason", None) or (status or {}).get("reason"),
        "started_at": getattr(stored, "created_at", None) or summary.get("started_at"),
        "verdict": getattr(stored, "verdict", None),
        "tags": list(getattr(stored, "tags", ()) or ()),
        "assertions": [{"expression": a.expression, "passed": a.passed, "actual": a.actual}
                       for a in getattr(stored, "assertions", ()) or ()],
        "target_url": target.get("url"), "protocol": target.get("protocol"),
        "encoding": pool.get("encoding"), "compression": pool.get("compression"),
    }


def run_view(folder: str | Path, stored: Any = None, *,
             slowest: int = SLOWEST_COUNT) -> dict[str, Any]:
    """Everything the Run view shows, from a run folder and optionally its ``StoredRun`` row."""
    from modelcaliper.store import (
        indexable_summary,
        load_environment,
        load_histograms,
        load_intervals,
        load_server_metrics,
        load_spec,
        load_status,
    )

    path = Path(folder)
    summary = getattr(stored, "summary", None) or indexable_summary(path)
    histograms = load_histograms(path)
    requests = histograms.get("latency")
    queries = summary.get("queries") or {}
    return {
        "run": _run_header(summary, stored, path, load_status(path)),
        "facts": _facts(summary, stored),
        "latency": {"requests": distribution(requests),
                    "queries": distribution(histograms.get("query_latency"))},
        "deadline_ms": queries.get("deadline_ms") if queries else None,
        "intervals": downsample_intervals(load_intervals(path)),
        "phases": phase_breakdown(summary),
        "slowest": slowest_requests(path / "requests.parquet", slowest),
        "errors": error_rows(summary),
        "payload": _payload(summary),
        "profile": _profile(path, _get(summary, "load", "batch_size")),
        "server": server_view(summary, load_server_metrics(path), requests),
        "spec": getattr(stored, "spec", None) or load_spec(path),
        "environment": getattr(stored, "environment", None) or load_environment(path),
    }


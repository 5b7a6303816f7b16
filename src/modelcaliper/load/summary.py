"""The run summary: one stable JSON document (``modelcaliper.run/1``), its terminal form, hlogs.

Every time is in milliseconds, every rate per second, every size in bytes. The keys:

    schema          "modelcaliper.run/1"
    run_id          short random id of the run
    target          {url, protocol, model}
    load            {arrival, offered_rps, duration_s, batch_size, candidates, offered_qps,
                     warmup_s, settings {every LoadSpec field and the schedule's description}}
    requests        {scheduled, sent, ok, errors, timeouts, dropped, cancelled, model_errors,
                     warmup}      errors exclude timeouts; warm-up requests are not counted
    throughput      {achieved_rps, ok_rps, rows_per_s, window_s}
    latency_ms      {count, mean, p50, p90, p95, p99, p999, max} of every request that ended
                    (ok, errors, timeouts, model errors), from its intended send time
    latency_ok_ms   the same for successful requests only
    phases_ms       {phase: {mean, p50, p99, share}}; client phases always, server phases when
                    the target reported them; share = mean / mean latency
    queries         {count, ok, deadline_ms, deadline_misses, latency_ms {…}} or null
    payload_bytes   {request_mean, response_mean}  (sent requests; ok responses)
    errors_by_kind  {kind: count}     error_examples {kind: [up to 3 messages]}
    generator       {schedule_lag_ms {p50, p99, max}, cpu_percent, saturated, message,
                     offered_rps, dispatched_rps, target_healthy, workers [...]}
    confidence      {p99_ms: {estimate, low, high, level, n, method}} (order statistics;
                    a bound too few samples cannot give is null)
    intervals       per second of completion: {start_s, count, ok, errors, timeouts, p50_ms,
                    p99_ms}
    records         {requests: [parquet files], queries: [...]}   pool  {...} or null
    interrupted     true when Ctrl-C ended the run early
    started_at      ISO 8601 UTC of offset 0        versions  {modelcaliper, python, ...}

Missing statistics (no samples) are null, never 0, so "nothing measured" is not mistaken for
"instant".
"""

from __future__ import annotations

import math
import platform
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.load.health import assess_generator
from modelcaliper.load.pool import RequestPool
from modelcaliper.load.records import CLIENT_PHASES, SERVER_PHASES, RunStats
from modelcaliper.load.spec import LoadSpec, Plan
from modelcaliper.load.transport import Status
from modelcaliper.load.workers import RunResult
from modelcaliper.stats.confidence import quantile_ci_from_histogram
from modelcaliper.stats.histogram import Histogram
from modelcaliper.stats.hlog import HlogInterval, write_hlog

__all__ = ["SCHEMA", "build_summary", "latency_block", "render_summary", "write_latency_hlog",
           "write_summary"]

SCHEMA = "modelcaliper.run/1"
"""The summary format's name and version."""

_LATENCY_KEYS = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))


def latency_block(hist: Histogram) -> dict[str, Any]:
    """count, mean, p50, p90, p95, p99, p999 and max in ms (null without samples)."""
    if hist.count == 0:
        return {"count": 0, "mean": None, **{k: None for k, _ in _LATENCY_KEYS}, "max": None}
    values = hist.percentiles([q for _, q in _LATENCY_KEYS]).tolist()
    out: dict[str, Any] = {"count": hist.count, "mean": hist.mean / 1e3}
    out.update({key: v / 1e3 for (key, _), v in zip(_LATENCY_KEYS, values, strict=True)})
    out["max"] = hist.max / 1e3
    return out


def _phase_block(hist: Histogram, mean_latency_ms: float | None) -> dict[str, Any]:
    if hist.count == 0:
        return {"count": 0, "mean": None, "p50": None, "p99": None, "share": None}
    mean_ms = hist.mean / 1e3
    share = mean_ms / mean_latency_ms if mean_latency_ms else None
    return {"count": hist.count, "mean": mean_ms, "p50": hist.percentile(50) / 1e3,
            "p99": hist.percentile(99) / 1e3, "share": share}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("modelcaliper", "numpy", "pyarrow", "grpcio", "protobuf", "orjson"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _window_s(result: RunResult, plan: Plan, warmup_s: float) -> float:
    """The measured window: the plan's, or up to the last dispatch of an interrupted run."""
    if not result.interrupted:
        return plan.window_s
    return max(result.stats.last_dispatched_ns / 1e9 - warmup_s, 1e-9)


def build_summary(result: RunResult, spec: LoadSpec, plan: Plan, *,
                  target: Mapping[str, Any] | None = None, run_id: str | None = None,
                  pool: RequestPool | None = None) -> dict[str, Any]:
    """The summary document of one run (see the module docstring for every key)."""
    stats: RunStats = result.stats
    hists = stats.histograms
    window_s = _window_s(result, plan, spec.warmup_s)
    sent_span_s = stats.last_sent_ns / 1e9 - spec.warmup_s
    rate_window_s = max(window_s, sent_span_s)
    latency = latency_block(hists["latency"])
    phases = {name: _phase_block(hists[name], latency["mean"]) for name in CLIENT_PHASES}
    phases.update({name: _phase_block(hists[name], latency["mean"])
                   for name in SERVER_PHASES if hists[name].count})
    health = assess_generator(stats, window_s, spec.warmup_s, result.cpu_s, result.wall_s)
    worker_health = []
    for worker in result.workers:
        own = assess_generator(worker.stats, window_s, spec.warmup_s, worker.cpu_s, worker.wall_s)
        worker_health.append({"worker": worker.worker, "schedule_lag_ms": own.schedule_lag_ms,
                              "cpu_percent": own.cpu_percent, "saturated": own.saturated})
    confidence: dict[str, Any] = {"p99_ms": None}
    if hists["latency"].count:
        ci = quantile_ci_from_histogram(hists["latency"], 99.0, 0.95)
        confidence["p99_ms"] = {"estimate": ci.estimate / 1e3, "low": _finite(ci.low / 1e3),
                                "high": _finite(ci.high / 1e3), "level": ci.confidence,
                                "n": ci.n, "method": ci.method}
    queries = None
    if spec.fanout:
        queries = {"count": stats.queries, "ok": stats.queries_ok,
                   "deadline_ms": spec.deadline_s * 1e3 if spec.deadline_s else None,
                   "deadline_misses": stats.deadline_misses if spec.deadline_s else None,
                   "latency_ms": latency_block(hists["query_latency"])}
    ok = stats.count(Status.OK)
    load = {"arrival": spec.arrival, "offered_rps": spec.offered_rps,
            "duration_s": spec.duration_s or plan.window_s, "batch_size": spec.batch_size,
            "candidates": spec.candidates,
            "offered_qps": spec.unit_rate_per_s if spec.fanout else None,
            "warmup_s": spec.warmup_s, "settings": spec.describe()}
    return {
        "schema": SCHEMA,
        "run_id": run_id or uuid.uuid4().hex[:12],
        "target": dict(target or {"url": None, "protocol": None, "model": None}),
        "load": load,
        "requests": {"scheduled": stats.scheduled, "sent": stats.sent, "ok": ok,
                     "errors": stats.count(Status.ERROR),
                     "timeouts": stats.count(Status.TIMEOUT),
                     "dropped": stats.count(Status.DROPPED),
                     "cancelled": stats.count(Status.CANCELLED),
                     "model_errors": stats.count(Status.MODEL_ERROR),
                     "warmup": stats.warmup_requests},
        "throughput": {"achieved_rps": stats.sent / rate_window_s,
                       "ok_rps": ok / rate_window_s, "rows_per_s": stats.rows_ok / rate_window_s,
                       "window_s": window_s},
        "latency_ms": latency,
        "latency_ok_ms": latency_block(hists["latency_ok"]),
        "phases_ms": phases,
        "queries": queries,
        "payload_bytes": {
            "request_mean": stats.request_bytes_sum / stats.sent if stats.sent else None,
            "response_mean": stats.response_bytes_sum / ok if ok else None},
        "errors_by_kind": dict(sorted(stats.errors_by_kind.items(), key=lambda kv: -kv[1])),
        "error_examples": {k: list(v) for k, v in stats.error_examples.items()},
        "generator": {**health.to_dict(), "workers": worker_health},
        "confidence": confidence,
        "intervals": [
            {"start_s": row["start_s"], "count": row["count"], "ok": row["ok"],
             "errors": row["errors"], "timeouts": row["timeouts"],
             **{key.replace("_us", "_ms"): None if row[key] is None else row[key] / 1e3
                for key in ("p50_us", "p99_us", "lag_p99_us", "lag_max_us")}}
            for row in stats.intervals.rows((50, 99))],
        "records": {"requests": result.records_paths, "queries": result.query_paths},
        "pool": pool.describe() if pool is not None else None,
        "interrupted": result.interrupted,
        "started_at": datetime.fromtimestamp(result.started_at_s, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
        "versions": _versions(),
    }


def write_summary(summary: Mapping[str, Any], path: str | Path) -> None:
    """Write the summary as indented JSON."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")


def write_latency_hlog(stats: RunStats, started_at_s: float, path: str | Path) -> int:
    """Export the per-second latency histograms as an HdrHistogram interval log; lines written."""
    series = stats.intervals
    rows = series.rows((50,))
    intervals = []
    for row in rows:
        index = round(row["start_s"] / series.interval_s)
        hist = series.histogram(index)
        if hist.count:
            intervals.append(HlogInterval(row["start_s"], series.interval_s, hist))
    write_hlog(path, intervals, started_at_s,
               comment="modelcaliper latency from intended send time, values in microseconds")
    return len(intervals)


# ---------------------------------------------------------------------- terminal


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def render_summary(summary: Mapping[str, Any]) -> str:
    """A compact terminal rendering of a summary document."""
    lines: list[str] = []
    target, load, req = summary["target"], summary["load"], summary["requests"]
    lat, thr = summary["latency_ms"], summary["throughput"]
    head = f"run {summary['run_id']}"
    if target.get("url"):
        head += f"  {target['protocol']} {target['url']}  model {target['model']}"
    lines.append(head + ("  (interrupted)" if summary["interrupted"] else ""))
    unit = "queries/s" if load["candidates"] else "req/s"
    rate = load["offered_qps"] if load["candidates"] else load["offered_rps"]
    fan = f", {load['candidates']} candidates" if load["candidates"] else ""
    lines.append(f"load        {load['arrival']} {rate:.4g} {unit} for {load['duration_s']:g}s"
                 f" (warm-up {load['warmup_s']:g}s), batch {load['batch_size']}{fan}")
    lines.append(f"requests    {req['scheduled']} scheduled, {req['sent']} sent, {req['ok']} ok, "
                 f"{req['errors']} errors, {req['timeouts']} timeouts, {req['dropped']} dropped"
                 + (f", {req['cancelled']} cancelled" if req["cancelled"] else "")
                 + (f", {req['model_errors']} model errors" if req["model_errors"] else ""))
    lines.append(f"throughput  {thr['achieved_rps']:.1f} req/s sent, {thr['ok_rps']:.1f} ok/s, "
                 f"{thr['rows_per_s']:.0f} rows/s")
    ci = summary["confidence"]["p99_ms"]
    ci_text = ""
    if ci:
        high = "?" if ci["high"] is None else _ms(ci["high"])  # too few samples to bound it
        ci_text = f" [{'?' if ci['low'] is None else _ms(ci['low'])}–{high}]"
    lines.append(f"latency ms  mean {_ms(lat['mean'])}  p50 {_ms(lat['p50'])}  "
                 f"p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}{ci_text}  "
                 f"p99.9 {_ms(lat['p999'])}  max {_ms(lat['max'])}")
    lines.append(f"  {'phase':<14}{'mean':>9}{'p50':>9}{'p99':>9}{'share':>8}")
    phases = summary["phases_ms"]
    # The client phases add up to the latency; network plus the server's phases split the
    # same send-to-done time another way, so they are listed apart.
    ordered = [n for n in CLIENT_PHASES if n != "network"]
    split = [n for n in phases if n not in ordered and phases[n]["count"]]
    for name in ordered + split:
        block = phases[name]
        if split and name == split[0]:
            lines.append("  send + wait + receive, split into the network and the server:")
        if not block["count"]:
            continue
        share = "" if block["share"] is None else f"{100 * block['share']:.0f}%"
        lines.append(f"  {name:<14}{_ms(block['mean']):>9}{_ms(block['p50']):>9}"
                     f"{_ms(block['p99']):>9}{share:>8}")
    if summary["errors_by_kind"]:
        lines.append("errors")
        for kind, count in summary["errors_by_kind"].items():
            examples = summary["error_examples"].get(kind) or []
            example = f'  e.g. "{examples[0]}"' if examples else ""
            lines.append(f"  {kind} ×{count}{example}")
    queries = summary["queries"]
    if queries:
        qlat = queries["latency_ms"]
        text = f"queries     {queries['count']} queries, {queries['ok']} fully ok, " \
               f"p50 {_ms(qlat['p50'])} ms, p99 {_ms(qlat['p99'])} ms"
        if queries["deadline_ms"]:
            missed = queries["deadline_misses"] / queries["count"] if queries["count"] else 0.0
            text += (f"; deadline {queries['deadline_ms']:g} ms missed by "
                     f"{queries['deadline_misses']} ({100 * missed:.1f}%)")
        lines.append(text)
    gen = summary["generator"]
    lag = gen["schedule_lag_ms"]
    lines.append(f"generator   schedule lag p50 {_ms(lag['p50'])} ms, p99 {_ms(lag['p99'])} ms, "
                 f"max {_ms(lag['max'])} ms; cpu {gen['cpu_percent']:.0f}%"
                 + ("" if gen["saturated"] else "; kept up"))
    if gen["message"]:
        lines.append(f"warning: {gen['message']}")
    return "\n".join(lines) + "\n"

"""What a sweep keeps of each point: its key figures, verdicts, early stop, and the run it is.

``figures_of`` reads a run summary (``modelcaliper.run/1``) into the handful of numbers a sweep
compares and draws: rates, latency percentiles with the p99 interval, error and deadline-miss
rates, bytes per request, the server's time per request, and the CPU per request and per
candidate on both sides. ``PointResult`` is one stored run of the sweep (a point, or a step
of a capacity search) with those figures; ``describe`` is its entry in ``sweep.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelcaliper.store.schema import deadline_miss_rate_of, error_rate_of
from modelcaliper.sweep.plan import Point

__all__ = ["PointResult", "early_stop_record", "figures_of", "link_figures", "watched_value"]


def _get(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def watched_value(summary: dict[str, Any] | None, name: str) -> float | None:
    """The value (ms) of a watched percentile such as ``p99`` or ``query_p95``."""
    if summary is None:
        return None
    if name.startswith("query_"):
        return _get(summary, "queries", "latency_ms", name.removeprefix("query_"))
    return _get(summary, "latency_ms", name)


def _per(value: float | None, count: float | None, scale: float = 1.0) -> float | None:
    if value is None or not count:
        return None
    return value / count * scale


def figures_of(summary: dict[str, Any], *, cost: dict[str, Any] | None = None,
               server_cpu_s: float | None = None, client_cpu_s: float | None = None,
               watch: str = "p99") -> dict[str, Any]:
    """The key figures of one run (see the module docstring); missing ones are None."""
    load, requests, throughput = summary["load"], summary["requests"], summary["throughput"]
    latency = summary["latency_ms"]
    queries = summary.get("queries") or {}
    window_s = throughput.get("window_s") or 0.0
    sent = requests.get("sent") or 0
    handled = sent + (requests.get("warmup") or 0)
    batch = load.get("batch_size") or 1
    rows_per_request = (throughput["rows_per_s"] / throughput["ok_rps"]
                        if throughput.get("ok_rps") else float(batch))
    ci = _get(summary, "confidence", "p99_ms") or {}
    server_total = _get(summary, "phases_ms", "total", "mean")
    server_cpu_us = _per(server_cpu_s, handled, 1e6)
    figures: dict[str, Any] = {
        "offered_rps": load.get("offered_rps"),
        "offered_qps": load.get("offered_qps"),
        "achieved_rps": throughput.get("achieved_rps"),
        "ok_rps": throughput.get("ok_rps"),
        "rows_per_s": throughput.get("rows_per_s"),
        "queries_per_s": _per(queries.get("ok"), window_s) if queries else None,
        "window_s": window_s,
        "requests": sent,
        "p50_ms": latency.get("p50"), "p90_ms": latency.get("p90"),
        "p99_ms": latency.get("p99"), "p999_ms": latency.get("p999"),
        "p99_low_ms": ci.get("low"), "p99_high_ms": ci.get("high"),
        "query_p50_ms": _get(queries, "latency_ms", "p50"),
        "query_p99_ms": _get(queries, "latency_ms", "p99"),
        "watched": watch, "watched_ms": watched_value(summary, watch),
        "error_rate": error_rate_of(summary),
        "deadline_miss_rate": deadline_miss_rate_of(summary),
        "request_bytes": _get(summary, "payload_bytes", "request_mean"),
        "response_bytes": _get(summary, "payload_bytes", "response_mean"),
        "rows_per_request": rows_per_request,
        "server_ms_per_request": server_total,
        "server_ms_per_candidate": _per(server_total, rows_per_request),
        "server_cpu_us_per_request": server_cpu_us,
        "server_cpu_us_per_candidate": _per(server_cpu_us, rows_per_request),
        "client_cpu_us_per_request": None, "client_cpu_us_per_candidate": None,
        "encode_us_per_request": None, "send_receive_us_per_request": None,
        "in_run_client_cpu_us_per_request": _per(client_cpu_s, handled, 1e6),
        "generator_saturated": _get(summary, "generator", "saturated"),
    }
    if cost:
        figures.update(client_cpu_us_per_request=cost.get("us_per_request"),
                       client_cpu_us_per_candidate=cost.get("us_per_candidate"),
                       encode_us_per_request=cost.get("encode_us_per_request"),
                       send_receive_us_per_request=cost.get("send_receive_us_per_request"))
    client = figures["client_cpu_us_per_candidate"]
    server = figures["server_cpu_us_per_candidate"]
    figures["cpu_us_per_candidate"] = (None if client is None
                                       else client + (server or 0.0))
    return figures


def link_figures(summary: dict[str, Any], before: tuple[int, int],
                 after: tuple[int, int]) -> dict[str, Any]:
    """Bytes the rate-limited link carried each way per request (warm-up included)."""
    requests = summary["requests"]
    handled = (requests.get("sent") or 0) + (requests.get("warmup") or 0)
    up, down = after[0] - before[0], after[1] - before[1]
    return {"link_bytes_up": up, "link_bytes_down": down,
            "link_bytes_up_per_request": _per(up, handled),
            "link_bytes_down_per_request": _per(down, handled)}


def early_stop_record(sink: Any, summary: dict[str, Any] | None,
                      max_s: float) -> dict[str, Any]:
    """How a point's load ended: early (which rule, why) or at its full duration; time saved."""
    measured_s = _get(summary, "throughput", "window_s") if summary else None
    rule = getattr(sink, "rule_met", None)
    aborted = rule == "aborted"  # the server died: a failure, not an early stop
    stopped = bool(summary and summary.get("stopped_early")) and not aborted
    saved_s = max(0.0, max_s - measured_s) if stopped and measured_s is not None else 0.0
    return {"stopped_early": stopped, "rule": rule if stopped or aborted else None,
            "reason": getattr(sink, "reason", None) if stopped or aborted else None,
            "max_s": max_s, "measured_s": measured_s, "saved_s": saved_s,
            "intervals": getattr(sink, "intervals", {})}


@dataclass
class PointResult:
    """One run of the sweep: the point, the rate it ran at, how it went and what it measured."""

    point: Point
    rate_per_s: float
    label: str
    status: str
    """``completed``, ``failed`` (the run, or the server, failed), ``interrupted``."""
    reason: str | None = None
    run_id: str | None = None
    folder: str | None = None
    passed: bool | None = None
    """Whether every SLO held (without an SLO: completed without errors)."""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    early: dict[str, Any] = field(default_factory=dict)
    search_step: int | None = None
    """Position within its configuration's capacity search (None for a fixed-rate point)."""
    wall_s: float = 0.0

    def describe(self) -> dict[str, Any]:
        """The point's entry in ``sweep.json``."""
        return {"index": self.point.index, "label": self.label,
                "config_key": self.point.config_key,
                "config": {**self.point.describe(), "rps": self.rate_per_s},
                "search_step": self.search_step, "status": self.status, "reason": self.reason,
                "run_id": self.run_id, "folder": self.folder, "passed": self.passed,
                "verdicts": self.verdicts, "figures": self.figures, "early_stop": self.early,
                "wall_s": round(self.wall_s, 3)}

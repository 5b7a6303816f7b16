"""The server's Prometheus histograms of a run, shaped to sit next to the client's latency.

Two sources, both in the run folder: the summary's ``server_metrics`` (the estimates the run
computed: count, mean, p50/p90/p99 per classified series) and ``server_metrics.json``, whose
``diff`` holds the run's share of every series, including each histogram's cumulative
``_bucket{le=...}`` counters. From the buckets this module rebuilds each histogram as a CDF
(the share of requests at or below every bucket bound) and puts the client's CDF at the same
bounds beside it, read from the client's stored latency histogram — the two curves are then
directly comparable, whatever the server's bucket layout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelcaliper.stats.histogram import Histogram

__all__ = ["MAX_SERVER_HISTOGRAMS", "bucket_series", "server_view"]

MAX_SERVER_HISTOGRAMS = 8
"""Server histograms charted per run (the busiest ones)."""

_SERIES = re.compile(r'^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)_bucket(?:\{(?P<labels>.*)\})?$')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNITS = (("_seconds", 1e3, "ms"), ("_milliseconds", 1.0, "ms"), ("_ms", 1.0, "ms"),
          ("_microseconds", 1e-3, "ms"), ("_usecs", 1e-3, "ms"), ("_us", 1e-3, "ms"))


def _unit_of(name: str) -> tuple[float, str | None]:
    for suffix, factor, unit in _UNITS:
        if name.endswith(suffix) or name.endswith(suffix + "_histogram"):
            return factor, unit
    if name.startswith(":tensorflow:") and "latency" in name:
        return 1e-3, "ms"  # TF Serving exports µs without saying so in the name
    return 1.0, None


def bucket_series(diff: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Histograms found in a metrics diff: ``{metric, labels, unit, le: [...], cumulative: [...]}``
    with finite bounds ascending (scaled to ms when the name tells the unit), busiest first."""
    if not isinstance(diff, Mapping):
        return []
    found: dict[tuple[str, str], dict[float, float]] = {}
    for key, value in diff.items():
        match = _SERIES.match(str(key))
        if not match or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        bound_text = labels.pop("le", None)
        try:
            bound = float(bound_text) if bound_text is not None else math.nan
        except ValueError:
            continue
        if math.isnan(bound):
            continue
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        found.setdefault((match.group("name"), label_text), {})[bound] = float(value)
    out: list[dict[str, Any]] = []
    for (name, label_text), buckets in found.items():
        bounds = sorted(buckets)
        total = buckets[bounds[-1]] if math.isinf(bounds[-1]) else max(buckets.values())
        if total <= 0:
            continue
        factor, unit = _unit_of(name)
        finite = [b for b in bounds if math.isfinite(b)]
        out.append({"metric": name, "labels": label_text, "unit": unit, "count": int(total),
                    "le": [float(f"{b * factor:.6g}") for b in finite],
                    "cumulative": [int(buckets[b]) for b in finite]})
    out.sort(key=lambda s: (-int(s["count"]), str(s["metric"]), str(s["labels"])))
    return out


def _client_cdf(hist: Histogram, bounds_ms: list[float]) -> list[float]:
    """Share of the client's latencies at or below each bound (slots split at their high end)."""
    slots, counts = hist.nonzero()
    if not len(slots):
        return [0.0] * len(bounds_ms)
    highs_ms = hist.layout.highest_at(slots) / 1e3
    cumulative = np.cumsum(counts)
    positions = np.searchsorted(highs_ms, np.asarray(bounds_ms, dtype=np.float64), side="right")
    total = cumulative[-1]
    return [float(f"{(cumulative[p - 1] / total if p else 0.0):.6g}") for p in positions]


def server_view(summary: Mapping[str, Any], metrics: Mapping[str, Any] | None,
                client: Histogram | None) -> dict[str, Any] | None:
    """Rows of the server's estimates and CDF charts beside the client's, or None without any."""
    estimates = summary.get("server_metrics") if isinstance(summary, Mapping) else None
    rows: list[dict[str, Any]] = []
    available = None
    reason = None
    if isinstance(estimates, Mapping):
        available = bool(estimates.get("available"))
        reason = estimates.get("reason")
        for kind, entries in (estimates.get("histograms") or {}).items():
            for entry in entries or ():
                labels = entry.get("labels") or {}
                rows.append({"kind": kind, "metric": entry.get("metric"),
                             "labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                             "count": entry.get("count"), "mean": entry.get("mean"),
                             "p50": entry.get("p50"), "p90": entry.get("p90"),
                             "p99": entry.get("p99")})
    series = bucket_series((metrics or {}).get("diff") if isinstance(metrics, Mapping) else None)
    charts = []
    for entry in series[:MAX_SERVER_HISTOGRAMS]:
        total = entry["count"]
        chart = {**entry, "server_share": [float(f"{c / total:.6g}")
                                           for c in entry["cumulative"]]}
        if entry["unit"] == "ms" and client is not None and client.count:
            chart["client_share"] = _client_cdf(client, entry["le"])
        charts.append(chart)
    if not rows and not charts and available is None:
        return None
    return {"available": available if available is not None else bool(charts),
            "reason": reason, "rows": rows, "charts": charts}

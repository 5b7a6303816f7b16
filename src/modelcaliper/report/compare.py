"""The data behind the Compare view: two or more runs against the first one, the baseline.

For every candidate and every compared percentile (p50, p90, p99, p99.9 of the request
latency; p99 of the query latency with fan-out) the delta comes with both runs' 95 %
order-statistic intervals (``stats.confidence.compare_quantile``): a change counts as
*outside noise* only when the intervals do not overlap. The verdict is one plain line per
candidate, e.g. ``p99 −48 ms, outside noise``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelcaliper.report.distributions import percentile_curve, shared_bins
from modelcaliper.stats.confidence import compare_quantile
from modelcaliper.stats.histogram import Histogram

__all__ = ["COMPARED_PERCENTILES", "compare_view", "format_delta", "format_delta_ms",
           "verdict_line"]

COMPARED_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
"""Request-latency percentiles in the deltas table."""

_SCALARS = (("error rate", "error_rate", "ratio"),
            ("deadline miss rate", "deadline_miss_rate", "ratio"),
            ("achieved rate", "achieved_rps", "per_s"))


def format_delta_ms(delta_ms: float) -> str:
    """A signed delta in ms with a real minus sign and sensible precision (``−48 ms``)."""
    size = abs(delta_ms)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    text = f"{size:.{digits}f}"
    sign = "−" if delta_ms < 0 and float(text) else "+" if float(text) else "±"
    return f"{sign}{text} ms"


def _signed(value: float, text: str) -> str:
    return ("−" if value < 0 else "+") + text.lstrip("-")


def format_delta(delta: float | None, unit: str) -> str:
    """A signed delta of a scalar: ``+1.2 pp`` for ratios, ``−3.0/s`` for rates."""
    if delta is None or not math.isfinite(delta):
        return "–"
    if unit == "ratio":
        return _signed(delta, f"{delta * 100:.2f} pp")
    if unit == "per_s":
        return _signed(delta, f"{delta:.1f}/s")
    return format_delta_ms(delta)


def _bound(value: float) -> float | None:
    return value / 1e3 if math.isfinite(value) else None


def _row(series: str, percentile: float, base: Histogram, other: Histogram,
         confidence: float) -> dict[str, Any]:
    cmp = compare_quantile(base, other, percentile, confidence)
    a, b = cmp.baseline, cmp.candidate
    delta_ms = (b.estimate - a.estimate) / 1e3
    return {"series": series, "percentile": percentile,
            "baseline_ms": a.estimate / 1e3, "baseline_low_ms": _bound(a.low),
            "baseline_high_ms": _bound(a.high),
            "candidate_ms": b.estimate / 1e3, "candidate_low_ms": _bound(b.low),
            "candidate_high_ms": _bound(b.high),
            "delta_ms": delta_ms, "delta_text": format_delta_ms(delta_ms),
            "delta_ratio": (b.estimate / a.estimate - 1.0) if a.estimate else None,
            "delta_ratio_text": (_signed(b.estimate - a.estimate,
                                         f"{(b.estimate / a.estimate - 1.0) * 100:.1f} %")
                                 if a.estimate else ""),
            "change": cmp.change, "outside_noise": cmp.outside_noise}


def _label(percentile: float) -> str:
    return f"p{percentile:g}"


def verdict_line(row: Mapping[str, Any]) -> str:
    """``p99 −48 ms, outside noise`` (or ``within noise``) for one row of the deltas table."""
    prefix = "query " if row["series"] == "queries" else ""
    noise = "outside noise" if row["outside_noise"] else "within noise"
    return f"{prefix}{_label(row['percentile'])} {format_delta_ms(row['delta_ms'])}, {noise}"


def _scalars(base: Any, other: Any) -> list[dict[str, Any]]:
    rows = []
    for label, attribute, unit in _SCALARS:
        a, b = getattr(base, attribute, None), getattr(other, attribute, None)
        if a is None and b is None:
            continue
        delta = b - a if a is not None and b is not None else None
        rows.append({"name": label, "unit": unit, "baseline": a, "candidate": b, "delta": delta,
                     "delta_text": format_delta(delta, unit)})
    return rows


def _run_label(stored: Any, folder: Path) -> dict[str, Any]:
    return {"run_id": getattr(stored, "run_id", None) or folder.name,
            "model": getattr(stored, "model", None),
            "version": getattr(stored, "model_version", None),
            "started_at": getattr(stored, "created_at", None),
            "status": getattr(stored, "status", None)}


def compare_view(runs: Sequence[tuple[str | Path, Any]],
                 confidence: float = 0.95) -> dict[str, Any]:
    """Overlaid curves and histograms, deltas with intervals and verdicts: first run = baseline.

    ``runs`` are (folder, StoredRun or None) pairs; the StoredRun supplies the labels and the
    indexed rates. Runs without a latency histogram are listed but not compared.
    """
    from modelcaliper.store import load_histograms

    labels, requests, queries = [], [], []
    for folder, stored in runs:
        path = Path(folder)
        histograms = load_histograms(path)
        labels.append(_run_label(stored, path))
        requests.append(histograms.get("latency"))
        queries.append(histograms.get("query_latency"))
    view: dict[str, Any] = {"runs": labels, "confidence": confidence, "series": {}}
    for name, hists in (("requests", requests), ("queries", queries)):
        if not any(h is not None and h.count for h in hists):
            continue
        view["series"][name] = {
            "curves": [percentile_curve(h) if h is not None and h.count else None for h in hists],
            "bins": shared_bins([h if h is not None and h.count else None for h in hists]),
        }
    comparisons = []
    base_hist, base_queries = requests[0], queries[0]
    for index in range(1, len(labels)):
        rows = []
        other = requests[index]
        if base_hist is not None and base_hist.count and other is not None and other.count:
            rows += [_row("requests", q, base_hist, other, confidence)
                     for q in COMPARED_PERCENTILES]
        other_q = queries[index]
        if base_queries is not None and base_queries.count and other_q is not None \
                and other_q.count:
            rows.append(_row("queries", 99.0, base_queries, other_q, confidence))
        headline = next((r for r in rows if r["series"] == "requests" and r["percentile"] == 99),
                        None)
        comparisons.append({
            "baseline": labels[0]["run_id"], "candidate": labels[index]["run_id"],
            "rows": rows, "scalars": _scalars(runs[0][1], runs[index][1]),
            "verdict": verdict_line(headline) if headline else "no latency to compare",
            "verdicts": [verdict_line(r) for r in rows],
        })
    view["comparisons"] = comparisons
    return view

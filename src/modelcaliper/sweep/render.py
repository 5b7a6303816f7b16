"""The sweep in the terminal: one line per run as it ends, then the table and the recommendation.

    [3/12] batch 25 + v2-grpc gzip @ 40 req/s  p99 12.3 ms [11.9-13.1]  1234 req in 6.1 s
           (early: known within ±10%)  held

    sweep 20261127-101500-sweep-mlp-3fa2c1: 12 runs in 2m41s, 1 server start; early
    stopping measured 71 s of 360 s planned (saved 289 s)
      configuration            sustains     p99 ms   cpu µs/cand   bytes/req   why
      ...
    recommendation: batch 25 + v2-grpc gzip: p99 12.3 ms at 40 req/s; v2-rest json fails
    p99<250ms above 20 req/s
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelcaliper.sweep.plan import rate_text
from modelcaliper.sweep.results import PointResult

__all__ = ["duration_text", "point_line", "render_sweep"]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def duration_text(seconds: float) -> str:
    """``41.2 s``, ``2m41s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def point_line(result: PointResult, position: int, total: int | None, fanout: bool) -> str:
    """One finished run in a line: what, the watched percentile with its interval, how it ended."""
    figures, early = result.figures, result.early
    head = f"[{position}/{total}]" if total else f"[{position}]"
    step = f" (search step {result.search_step + 1})" if result.search_step is not None else ""
    parts = [f"{head} {result.label}{step} @ {rate_text(result.rate_per_s, fanout)}"]
    if figures:
        watch = figures.get("watched") or "p99"
        # The summary's own interval (the p99 of requests): the early-stop intervals are of
        # the moment it stopped, before the last answers came in.
        low, high = (figures.get("p99_low_ms"), figures.get("p99_high_ms")) \
            if watch == "p99" else (None, None)
        bounds = f" [{_ms(low)}-{_ms(high)}]" if low is not None and high is not None else ""
        count = figures.get("requests")
        parts.append(f"{watch} {_ms(figures.get('watched_ms'))} ms{bounds}")
        parts.append(f"{count} req in {early.get('measured_s') or 0:.1f} s")
        if early.get("stopped_early"):
            parts.append(f"(early: {early.get('reason')})")
    if result.status != "completed":
        parts.append(f"{result.status.upper()}: {result.reason or ''}".rstrip(": "))
    elif result.passed is not None:
        parts.append("held" if result.passed else "failed: " + ", ".join(
            v["expression"] for v in result.verdicts if not v["passed"]) or "errors")
    return "  ".join(parts)


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render_sweep(document: Mapping[str, Any]) -> str:
    """The end-of-sweep report: totals, one row per configuration, the recommendation."""
    timing, fanout = document["timing"], document["fanout"]
    lines = [f"sweep {document['sweep_id']}: {timing['runs']} runs in "
             f"{duration_text(document['wall_s'])}, {timing['server_starts']} server "
             f"start{'s' if timing['server_starts'] != 1 else ''}"
             + (f" ({document['status']})" if document["status"] != "completed" else "")]
    if timing["max_load_s"]:
        lines.append(f"early stopping: {timing['stopped_early']} of {timing['runs']} runs "
                     f"stopped early; {timing['measured_load_s']:.0f} s measured of "
                     f"{timing['max_load_s']:.0f} s planned (saved "
                     f"{duration_text(timing['early_stop_saved_s'])})")
    if document.get("link"):
        link = document["link"]
        lines.append(f"link: {link['rate']} each way ({link['method']}); delay "
                     f"{link['delay']}")
    rows = document["recommendation"]["ranked"]
    if rows:
        watch = document["watch"]
        width = max(len("configuration"), *(len(r["label"]) for r in rows))
        lines.append(f"  {'#':>2}  {'configuration':<{width}}  {'sustains':>14}  "
                     f"{watch + ' ms':>9}  {'client µs/cand':>14}  {'server µs/cand':>14}  "
                     f"{'bytes/req':>10}")
        for row in rows:
            rank = str(row["rank"]) if row["rank"] is not None else "-"
            sustains = rate_text(row["sustainable_rps"], fanout) \
                if row["sustainable_rps"] is not None else "none"
            size = row["request_bytes"]
            lines.append(f"  {rank:>2}  {row['label']:<{width}}  {sustains:>14}  "
                         f"{_ms(row['watched_ms']):>9}  "
                         f"{_cpu(row['client_cpu_us_per_candidate']):>14}  "
                         f"{_cpu(row['server_cpu_us_per_candidate']):>14}  "
                         f"{'-' if size is None else f'{size:.0f}':>10}")
            lines.append(f"      {row['why']}")
    for config in document["configs"]:
        capacity = config.get("capacity")
        if capacity:
            knee = capacity.get("knee")
            knee_text = (f", knee at {rate_text(knee['rate_per_s'], fanout)}"
                         if knee else "")
            found = capacity["capacity_rps"]
            lines.append(f"capacity of {config['label']}: "
                         f"{rate_text(found, fanout) if found else 'none'}"
                         f" ({capacity['reason']}{knee_text})")
    for note in document["notes"]:
        lines.append(f"note: {note}")
    lines.append(f"recommendation: {document['recommendation']['headline']}")
    return "\n".join(lines) + "\n"

"""Show a payload report: plain-text tables for the terminal and the JSON file.

Rendering is a pure function of the report, so the same report always prints the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import UsageError
from modelcaliper.payload.analysis import REFERENCE_LINK_BITS_PER_S, PayloadReport
from modelcaliper.units import format_link_rate

__all__ = ["render_report", "render_table", "write_json"]


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left_columns: int = 2
) -> str:
    """Align ``rows`` under ``headers``: the first ``left_columns`` left-aligned, the rest right."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i < left_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _int(value: float) -> str:
    return f"{value:,.0f}"


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.3f}"


def render_report(report: PayloadReport) -> str:
    """The whole report as text: one table per batch size, then the what-ifs."""
    link = format_link_rate(report.link_bits_per_s)
    reference = format_link_rate(REFERENCE_LINK_BITS_PER_S)
    out = [
        "Payload per request: body bytes (mean), encode and decode time (median), "
        f"wire time at {link} and {reference}",
    ]
    headers = [
        "encoding",
        "compression",
        "request bytes",
        "ratio",
        "response bytes",
        "encode µs",
        "decode µs",
        f"wire ms @{link}",
        f"wire ms @{reference}",
    ]
    for batch_size in sorted({row.batch_size for row in report.rows}):
        rows = [r for r in report.rows if r.batch_size == batch_size]
        mean_rows = sum(r.mean_rows for r in rows) / len(rows)
        out.append("")
        out.append(
            f"batch size {batch_size} "
            f"({rows[0].requests} requests, {mean_rows:.3g} rows on average)"
        )
        out.append(
            render_table(
                headers,
                [
                    [
                        r.encoding,
                        r.compression,
                        _int(r.request_bytes),
                        f"{r.compression_ratio:.2f}",
                        _int(r.response_bytes),
                        _us(r.encode_us),
                        _us(r.decode_us),
                        _ms(r.wire_ms),
                        _ms(r.wire_ms_100mbit),
                    ]
                    for r in rows
                ],
            )
        )
    if report.skipped:
        out.append("")
        out.append(
            "not measured: "
            + "; ".join(
                f"{s['encoding']} + {s['compression']} ({s['reason']})" for s in report.skipped
            )
        )
    out.append("")
    out.extend(_render_shared_context(report.what_if.get("shared_context", {})))
    out.append("")
    out.extend(_render_short_names(report.what_if.get("short_names", {})))
    return "\n".join(out) + "\n"


def _what_if_table(
    results: Sequence[dict[str, Any]],
    headers: Sequence[str],
    cells: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """A what-if table, ``-`` for entries the codec refused, then one line per refusal."""
    rows = [
        [
            str(r["batch_size"]),
            r["encoding"],
            *(["-"] * (len(headers) - 2) if "error" in r else cells(r)),
        ]
        for r in results
    ]
    errors = {r["encoding"]: r["error"] for r in results if "error" in r}
    return [render_table(headers, rows), *(f"{enc}: {error}" for enc, error in errors.items())]


def _render_shared_context(what_if: dict[str, Any]) -> list[str]:
    columns = what_if.get("columns", [])
    title = "What if per-query context inputs were sent once per request"
    if what_if.get("group_by"):
        title += f" (grouped by {what_if['group_by']})"
    lines = [title + ":"]
    if columns:
        more = f" and {len(columns) - 12} more" if len(columns) > 12 else ""
        lines.append(f"context inputs ({len(columns)}): {', '.join(columns[:12])}{more}")
    if what_if.get("note"):
        lines.append(what_if["note"])
    if not columns:
        return lines
    headers = [
        "batch",
        "encoding",
        "request B",
        "shared B",
        "saving B",
        "saving %",
        "gzip saving %",
    ]
    return lines + _what_if_table(
        what_if.get("results", []),
        headers,
        lambda r: [
            _int(r["request_bytes"]),
            _int(r["shared_request_bytes"]),
            _int(r["saving_bytes"]),
            f"{r['saving_pct']:.1f}",
            f"{r['gzip_saving_pct']:.1f}",
        ],
    )


def _render_short_names(what_if: dict[str, Any]) -> list[str]:
    lines = ["What if JSON bodies used short input names (f0, f1, ...):"]
    results = what_if.get("results", [])
    if not results:
        return [*lines, "no JSON encoding was measured"]
    headers = [
        "batch",
        "encoding",
        "request B",
        "name B",
        "name %",
        "short B",
        "saving %",
        "gzip saving %",
    ]
    return lines + _what_if_table(
        results,
        headers,
        lambda r: [
            _int(r["request_bytes"]),
            _int(r["name_bytes"]),
            f"{r['name_pct']:.1f}",
            _int(r["short_names_request_bytes"]),
            f"{r['saving_pct']:.1f}",
            f"{r['gzip_saving_pct']:.1f}",
        ],
    )


def write_json(report: PayloadReport, path: str | Path) -> None:
    """Write the report's JSON form to ``path``, creating missing parent directories."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise UsageError(f"cannot write --json file {target}: {exc.strerror or exc}") from None

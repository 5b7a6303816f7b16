"""The slowest requests of a run, read from ``requests.parquet`` without loading the whole file.

Two passes over the row groups. The first reads only ``intended_ns``, ``done_ns`` and
``warmup`` of each group (16–17 bytes a record) and keeps a running top-k of latencies with
``argpartition``, remembering (row group, row) of each candidate; the second reads the
remaining columns of just the groups that hold a winner and takes those rows. A million
records cost two 8 MB columns, not the 100+ MB table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SERVER_PHASES", "SLOWEST_COUNT", "WATERFALL_PHASES", "slowest_requests"]

SLOWEST_COUNT = 20
"""Requests in the waterfall."""

# (phase, start column, end column): the client phases partition done − intended.
WATERFALL_PHASES = (
    ("schedule_lag", "intended_ns", "dispatched_ns"),
    ("client_queue", "dispatched_ns", "sent_ns"),
    ("send", "sent_ns", "written_ns"),
    ("wait", "written_ns", "first_byte_ns"),
    ("receive", "first_byte_ns", "done_ns"),
)
SERVER_PHASES = ("recv", "decode", "queue", "batch", "compute", "transform", "model", "encode")
"""Server phases, in order, that split a request's wait in the waterfall."""
_DETAIL_COLUMNS = ("index", "dispatched_ns", "sent_ns", "written_ns", "first_byte_ns",
                   "status", "code", "error_kind", "request_bytes", "response_bytes", "rows")


def _int_column(table: Any, name: str) -> np.ndarray:
    column = table.column(name)
    return column.fill_null(-1).to_numpy().astype(np.int64, copy=False)


def _top_candidates(parquet: Any, k: int) -> list[tuple[int, int, int]]:
    """(latency ns, row group, row) of the ``k`` slowest measured requests, slowest first."""
    names = set(parquet.schema_arrow.names)
    columns = ["intended_ns", "done_ns"] + (["warmup"] if "warmup" in names else [])
    best_latency = np.zeros(0, np.int64)
    best_group = np.zeros(0, np.int64)
    best_row = np.zeros(0, np.int64)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=columns)
        intended, done = _int_column(table, "intended_ns"), _int_column(table, "done_ns")
        latency = np.where((done >= 0) & (intended >= 0), done - intended, -1)
        if "warmup" in columns:
            warm = table.column("warmup").fill_null(False).to_numpy(zero_copy_only=False)
            latency = np.where(warm.astype(bool), -1, latency)
        rows = np.flatnonzero(latency >= 0)
        if len(rows) > k:
            rows = rows[np.argpartition(-latency[rows], k - 1)[:k]]
        best_latency = np.concatenate([best_latency, latency[rows]])
        best_group = np.concatenate([best_group, np.full(len(rows), group)])
        best_row = np.concatenate([best_row, rows])
        if len(best_latency) > k:
            keep = np.argpartition(-best_latency, k - 1)[:k]
            best_latency, best_group = best_latency[keep], best_group[keep]
            best_row = best_row[keep]
    # Slowest first; ties by position in the file, so the order is stable.
    order = np.lexsort((best_row, best_group, -best_latency))
    return [(int(best_latency[i]), int(best_group[i]), int(best_row[i])) for i in order]


def _value(table: Any, name: str, row: int) -> Any:
    return table.column(name)[row].as_py() if name in table.column_names else None


def _split_wait(phases: list[dict[str, Any]], server_ms: dict[str, float]) -> list[dict[str, Any]]:
    """The wait split into the network's part and the server's phases, when the server said."""
    total = server_ms.get("total")
    wait = next((p for p in phases if p["phase"] == "wait"), None)
    if wait is None or not total or total > wait["ms"]:
        return phases
    named = [p for p in SERVER_PHASES if server_ms.get(p)]
    if any(p in named for p in ("transform", "model")):
        named = [p for p in named if p != "compute"]
    parts = [("network", wait["ms"] - total)] + [(p, server_ms[p]) for p in named]
    other = total - sum(server_ms[p] for p in named)
    if other > 1e-6:
        parts.append(("server_other", other))
    split, start = [], wait["start_ms"]
    for name, ms in parts:
        split.append({"phase": name, "start_ms": start, "ms": max(ms, 0.0)})
        start += max(ms, 0.0)
    index = phases.index(wait)
    return phases[:index] + split + phases[index + 1:]


def slowest_requests(path: str | Path, k: int = SLOWEST_COUNT) -> list[dict[str, Any]]:
    """The ``k`` slowest measured requests with their phases in ms (empty without records)."""
    path = Path(path)
    if k < 1 or not path.exists():
        return []
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(path))
    winners = _top_candidates(parquet, k)
    names = parquet.schema_arrow.names
    server = [n for n in names if n.startswith("server_") and n.endswith("_ms")]
    wanted = ["intended_ns", "done_ns"] + [c for c in _DETAIL_COLUMNS if c in names] + server
    groups = {group: parquet.read_row_group(group, columns=wanted)
              for group in sorted({g for _, g, _ in winners})}
    out = []
    for latency_ns, group, row in winners:
        table = groups[group]
        times = {name: _value(table, name, row) for name in
                 ("intended_ns", "dispatched_ns", "sent_ns", "written_ns", "first_byte_ns",
                  "done_ns")}
        phases = []
        for phase, start, end in WATERFALL_PHASES:
            begin, finish = times.get(start), times.get(end)
            if begin is None or finish is None:
                continue
            phases.append({"phase": phase, "start_ms": (begin - times["intended_ns"]) / 1e6,
                           "ms": max(finish - begin, 0) / 1e6})
        server_ms = {}
        for column in server:
            value = _value(table, column, row)
            if value is not None and np.isfinite(value):
                server_ms[column[len("server_"):-len("_ms")]] = float(f"{float(value):.6g}")
        phases = _split_wait(phases, server_ms)
        out.append({
            "index": _value(table, "index", row), "latency_ms": latency_ns / 1e6,
            "status": _value(table, "status", row), "code": _value(table, "code", row),
            "error_kind": _value(table, "error_kind", row),
            "request_bytes": _value(table, "request_bytes", row),
            "response_bytes": _value(table, "response_bytes", row),
            "rows": _value(table, "rows", row), "phases": phases, "server_ms": server_ms,
        })
    return out

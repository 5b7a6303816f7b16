"""Where full chunks of records go: folded into the run's statistics and appended to Parquet.

A ``RecordSink`` takes one chunk of columns at a time (in the order the chunks filled) and
(1) folds its measured records into a ``RunStats`` — histograms of the end-to-end latency and
of every phase, the per-second interval series, counters and byte sums — and (2) appends its
rows to the run's Parquet file as one row group. It runs wherever the recorder puts it: in the
recorder's own process (``Recorder(background=False)``, or a run too short to fill a chunk)
or in the recorder's writer process (``load.chunks``), so its inputs are plain numpy columns
and a few picklable settings.

Text columns (``code``, ``error_kind``) arrive as ids of interned texts; the sink keeps the
texts (``add_texts``) and turns the ids back into strings through an Arrow dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.load.transport import Status
from modelcaliper.server.timing import PHASES as SERVER_PHASES

__all__ = [
    "ENDED",
    "QUERY_INTS",
    "QUERY_EXTRA",
    "REQUEST_EXTRA",
    "REQUEST_INTS",
    "REQUEST_NAN_COLUMNS",
    "RecordSink",
    "SinkSettings",
]

Arrays = dict[str, np.ndarray]

ENDED = (Status.OK, Status.ERROR, Status.TIMEOUT, Status.MODEL_ERROR)
"""Statuses of requests that ended with an answer or a timeout: the ones with a latency."""

_TIMES = ("intended_ns", "dispatched_ns", "sent_ns", "written_ns", "first_byte_ns", "done_ns")
REQUEST_INTS = ("index", "query", "request_bytes", "response_bytes", *_TIMES)
"""Request columns kept as int64."""
REQUEST_NAN_COLUMNS = tuple(f"server_{p}_ms" for p in SERVER_PHASES)
"""Server phases per request, NaN when the target did not report them."""
REQUEST_EXTRA: dict[str, Any] = {
    "status": np.int8, "rows": np.int32, "warmup": np.bool_, "code": np.int32,
    "error_kind": np.int32, **{name: np.float32 for name in REQUEST_NAN_COLUMNS}}
"""Request columns of other types (``code`` and ``error_kind`` are ids of interned texts)."""
QUERY_INTS = ("index", "requests", "ok", "intended_ns", "done_ns")
"""Query columns kept as int64."""
QUERY_EXTRA: dict[str, Any] = {"missed": np.bool_, "warmup": np.bool_}
"""Query columns of other types."""

_STATUS_NAMES = np.array([s.name.lower() for s in Status], dtype=object)
_INTERVAL_CODE = np.array([0, 1, 2, -1, -1, 1], dtype=np.int64)  # Status → intervals.Outcome


@dataclass(frozen=True)
class SinkSettings:
    """What a sink needs to know, picklable for the writer process."""

    worker: int = 0
    path: Path | None = None
    query_path: Path | None = None


def _timestamps(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.int64(), mask=values < 0)


class RecordSink:
    """Folds and writes full chunks in order; ``close`` returns the statistics (see module)."""

    def __init__(self, settings: SinkSettings) -> None:
        from modelcaliper.load.records import RunStats

        self.settings = settings
        self.stats = RunStats()
        self.code_names: list[str] = []
        self.kind_names: list[str] = []
        self._writers: dict[str, Any] = {}

    def add_texts(self, codes: list[str], kinds: list[str]) -> None:
        """Texts interned since the last call, in id order."""
        self.code_names.extend(codes)
        self.kind_names.extend(kinds)

    # ------------------------------------------------------------------ requests

    def requests(self, v: Arrays) -> None:
        """Fold one chunk of request records and append it to the request file."""
        self._fold(v)
        self._write("requests", self.settings.path, self.request_table(v))

    def _fold(self, v: Arrays) -> None:
        stats, hists = self.stats, self.stats.histograms
        warm = v["warmup"]
        stats.warmup_requests += int(warm.sum())
        m = ~warm
        status = v["status"].astype(np.int64)
        stats.status_counts += np.bincount(status[m], minlength=len(Status))
        intended, dispatched, sent = v["intended_ns"], v["dispatched_ns"], v["sent_ns"]
        written, first, done = v["written_ns"], v["first_byte_ns"], v["done_ns"]
        was_sent = m & (sent >= 0)
        stats.sent += int(was_sent.sum())
        ended = m & np.isin(status, ENDED) & (done >= 0)
        ok = m & (status == Status.OK)
        stats.request_bytes_sum += int(v["request_bytes"][was_sent].sum())
        stats.response_bytes_sum += int(v["response_bytes"][ok].sum())
        stats.rows_ok += int(v["rows"][ok].sum())
        for name, values, mask in (("last_dispatched_ns", dispatched, m),
                                   ("last_sent_ns", sent, was_sent), ("last_done_ns", done, m)):
            if mask.any():
                setattr(stats, name, max(getattr(stats, name), int(values[mask].max())))
        latency_us = (done - intended) / 1e3
        hists["latency"].record_many(latency_us[ended])
        hists["latency_ok"].record_many(latency_us[ok & (done >= 0)])

        def phase(name: str, end: np.ndarray, start: np.ndarray, mask: np.ndarray) -> None:
            keep = mask & (end >= 0) & (start >= 0)
            hists[name].record_many((end[keep] - start[keep]) / 1e3)

        phase("schedule_lag", dispatched, intended, m)
        due = m & (dispatched >= 0) & (intended >= 0)
        stats.intervals.record_lag_many(intended[due] / 1e9,
                                        (dispatched[due] - intended[due]) / 1e3)
        phase("client_queue", sent, dispatched, m)
        phase("send", written, sent, m)
        phase("wait", first, written, m)
        phase("receive", done, first, ended)
        total_ms = v["server_total_ms"]
        has_total = ended & (sent >= 0) & ~np.isnan(total_ms)
        network_us = (done[has_total] - sent[has_total]) / 1e3 - total_ms[has_total] * 1e3
        hists["network"].record_many(network_us)
        for name in SERVER_PHASES:
            values = v[f"server_{name}_ms"]
            keep = m & ~np.isnan(values)
            hists[name].record_many(values[keep].astype(np.float64) * 1e3)
        stats.intervals.record_many(done[ended] / 1e9, latency_us[ended],
                                    _INTERVAL_CODE[status[ended]])

    def request_table(self, v: Arrays) -> dict[str, Any]:
        """The Parquet columns of request records (also the schema of an empty file)."""
        import pyarrow as pa

        table: dict[str, Any] = {
            "index": pa.array(v["index"]),
            "query": pa.array(v["query"], mask=v["query"] < 0),
            "worker": pa.array(np.full(len(v["index"]), self.settings.worker, np.int16)),
            "warmup": pa.array(v["warmup"]),
        }
        for name in _TIMES:
            table[name] = _timestamps(v[name])
        # Through a dictionary: Arrow expands it in C, without a Python string per row.
        names = pa.array(_STATUS_NAMES.tolist(), type=pa.string())
        table["status"] = pa.DictionaryArray.from_arrays(pa.array(v["status"]), names).cast(
            pa.string())
        for name, texts in (("code", self.code_names), ("error_kind", self.kind_names)):
            table[name] = pa.DictionaryArray.from_arrays(
                pa.array(v[name]), pa.array(list(texts) or [""], type=pa.string())).cast(
                pa.string())
        for name in ("request_bytes", "response_bytes"):
            table[name] = pa.array(v[name])
        table["rows"] = pa.array(v["rows"])
        for phase in SERVER_PHASES:
            table[f"server_{phase}_ms"] = pa.array(v[f"server_{phase}_ms"])
        return table

    # ------------------------------------------------------------------ queries

    def queries(self, v: Arrays) -> None:
        """Fold one chunk of query records and append it to the query file."""
        measured = ~v["warmup"]
        stats = self.stats
        stats.queries += int(measured.sum())
        stats.queries_ok += int((measured & (v["ok"] == v["requests"])).sum())
        stats.deadline_misses += int((measured & v["missed"]).sum())
        latency_us = (v["done_ns"][measured] - v["intended_ns"][measured]) / 1e3
        stats.histograms["query_latency"].record_many(latency_us)
        self._write("queries", self.settings.query_path, self.query_table(v))

    def query_table(self, v: Arrays) -> dict[str, Any]:
        """The Parquet columns of query records."""
        import pyarrow as pa

        return {
            "index": pa.array(v["index"]),
            "worker": pa.array(np.full(len(v["index"]), self.settings.worker, np.int16)),
            "warmup": pa.array(v["warmup"]),
            "intended_ns": pa.array(v["intended_ns"]),
            "done_ns": pa.array(v["done_ns"]),
            "requests": pa.array(v["requests"].astype(np.int32)),
            "ok": pa.array(v["ok"].astype(np.int32)),
            "missed": pa.array(v["missed"]),
        }

    # ------------------------------------------------------------------ files

    def _write(self, kind: str, path: Path | None, columns: dict[str, Any]) -> None:
        if path is None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(columns)
        if not table.num_rows:
            return
        writer = self._writers.get(kind)
        if writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[kind] = pq.ParquetWriter(str(path), table.schema,
                                                            compression="zstd")
        writer.write_table(table)

    def close(self, empty_requests: Arrays, empty_queries: Arrays) -> None:
        """Close the files; a run without records still gets files with the right columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        for kind, path, empty in (("requests", self.settings.path, empty_requests),
                                  ("queries", self.settings.query_path, empty_queries)):
            writer = self._writers.pop(kind, None)
            if writer is not None:
                writer.close()
            elif path is not None:
                table = (self.request_table if kind == "requests" else self.query_table)(empty)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table(table), str(path), compression="zstd")

"""Raw per-request records in bounded columnar chunks, and the statistics folded from them.

Every request of a run ends as one record. ``Recorder.add`` writes its fields into numpy
columns of a fixed chunk size; a full chunk is swapped for a fresh one and handed to a
background thread (``load.chunks``) that (1) folds it into the run's statistics — histograms
of the end-to-end latency and of every phase, the per-second interval series, counters and
byte sums — and (2) appends it to a Parquet file as one row group, in order. The event loop
never waits for that work unless the writer is ``MAX_CHUNKS_IN_FLIGHT`` chunks behind, so
memory stays bounded by a few chunks however long the run. The statistics are complete once
``close()`` has returned; a failure in the writer is raised there.

Times are integer nanoseconds from the run's start (``-1`` in memory, null in Parquet, when a
request never reached that point). Phases, all in the histograms in µs:

    schedule_lag   dispatched − intended   the generator's own lateness
    client_queue   sent − dispatched       waiting for an in-flight slot or a free connection
    send           written − sent          handing the request to the socket / gRPC
    wait           first_byte − written    until the answer starts
    receive        done − first_byte       reading the answer
    network        (done − sent) − server total, when the server reports its phases
    <server phase> each Server-Timing phase the target reported (recv, decode, ..., total)

Latency is ``done − intended`` and covers every request that ended with an answer or a
timeout (ok, error, timeout, model error); dropped and cancelled requests are counted but
have no latency. Warm-up records are written (``warmup`` = true) but not measured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.load.chunks import MAX_CHUNKS_IN_FLIGHT, Arrays, Chunk, ChunkWriter
from modelcaliper.load.transport import Outcome, Status
from modelcaliper.server.timing import PHASES as SERVER_PHASES
from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Histogram
from modelcaliper.stats.intervals import IntervalSeries

__all__ = [
    "CLIENT_PHASES",
    "DEFAULT_CHUNK_ROWS",
    "ENDED",
    "MAX_CHUNKS_IN_FLIGHT",
    "MAX_EXAMPLES",
    "SERVER_PHASES",
    "Recorder",
    "RunStats",
    "read_records",
]

DEFAULT_CHUNK_ROWS = 65536
"""Records per in-memory chunk (one Parquet row group): about 10 MB of columns."""

MAX_EXAMPLES = 3
"""Distinct error messages kept per error kind."""

CLIENT_PHASES = ("schedule_lag", "client_queue", "send", "wait", "receive", "network")
"""Phases measured by the client, in the order a request goes through them."""

ENDED = (Status.OK, Status.ERROR, Status.TIMEOUT, Status.MODEL_ERROR)
"""Statuses of requests that ended with an answer or a timeout: the ones with a latency."""

def _intern(ids: dict[str, int], names: list[str], text: str) -> int:
    """The id of ``text`` in ``ids``/``names``, added when new (the loop thread only adds; the
    writer reads ``names`` for ids handed to it, which are all there by then)."""
    ids[text] = len(names)
    names.append(text)
    return ids[text]


_STATUS_NAMES = np.array([s.name.lower() for s in Status], dtype=object)
_INTERVAL_CODE = np.array([0, 1, 2, -1, -1, 1], dtype=np.int64)  # Status → intervals.Outcome
_TIMES = ("intended_ns", "dispatched_ns", "sent_ns", "written_ns", "first_byte_ns", "done_ns")
_INTS = ("index", "query", "request_bytes", "response_bytes", *_TIMES)
_QUERY_TIMES = ("intended_ns", "done_ns")


def _histograms() -> dict[str, Histogram]:
    names = ("latency", "latency_ok", "query_latency", *CLIENT_PHASES, *SERVER_PHASES)
    return {name: Histogram(DEFAULT_LAYOUT) for name in names}


@dataclass
class RunStats:
    """Everything a run measured, mergeable exactly across workers (warm-up excluded)."""

    status_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(Status), np.int64))
    sent: int = 0
    histograms: dict[str, Histogram] = field(default_factory=_histograms)
    intervals: IntervalSeries = field(
        default_factory=lambda: IntervalSeries(1.0, layout=DEFAULT_LAYOUT))
    request_bytes_sum: int = 0
    response_bytes_sum: int = 0
    rows_ok: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, list[str]] = field(default_factory=dict)
    queries: int = 0
    queries_ok: int = 0
    deadline_misses: int = 0
    warmup_requests: int = 0
    last_dispatched_ns: int = -1
    last_sent_ns: int = -1
    last_done_ns: int = -1

    @property
    def scheduled(self) -> int:
        """Measured requests whose intended time came (each ended as one record)."""
        return int(self.status_counts.sum())

    def count(self, status: Status) -> int:
        """Measured requests that ended with ``status``."""
        return int(self.status_counts[status])

    def note_error(self, kind: str, message: str, times: int = 1) -> None:
        """Count a failure of ``kind``, keeping up to ``MAX_EXAMPLES`` distinct messages."""
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + times
        examples = self.error_examples.setdefault(kind, [])
        if message and len(examples) < MAX_EXAMPLES and message not in examples:
            examples.append(message)

    def merge(self, other: RunStats) -> None:
        """Add another worker's statistics into these, exactly."""
        self.status_counts += other.status_counts
        for name, hist in other.histograms.items():
            self.histograms.setdefault(name, Histogram(hist.layout)).merge(hist)
        self.intervals.merge(other.intervals)
        for name in ("sent", "request_bytes_sum", "response_bytes_sum", "rows_ok", "queries",
                     "queries_ok", "deadline_misses", "warmup_requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("last_dispatched_ns", "last_sent_ns", "last_done_ns"):
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        for kind, times in other.errors_by_kind.items():
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + times
            examples = self.error_examples.setdefault(kind, [])
            for message in other.error_examples.get(kind, []):
                if len(examples) < MAX_EXAMPLES and message not in examples:
                    examples.append(message)


def _timestamps(values: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.int64(), mask=values < 0)


class Recorder:
    """Collects one worker's request and query records in bounded chunks; see the module doc."""

    def __init__(self, *, worker: int = 0, path: str | Path | None = None,
                 query_path: str | Path | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, background: bool = True,
                 max_in_flight: int = MAX_CHUNKS_IN_FLIGHT) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
        self.worker = worker
        self.stats = RunStats()
        phases = [f"server_{p}_ms" for p in SERVER_PHASES]
        # code and error_kind are kept as ids of interned texts: the writer turns them into
        # strings through an Arrow dictionary, without holding the GIL the event loop needs
        # (converting 65 536 Python strings would hold it for milliseconds).
        extra = {"status": np.int8, "rows": np.int32, "warmup": np.bool_, "code": np.int32,
                 "error_kind": np.int32, **{name: np.float32 for name in phases}}
        self._code_ids: dict[str, int] = {"": 0}
        self._code_names: list[str] = [""]
        self._kind_ids: dict[str, int] = {"": 0}
        self._kind_names: list[str] = [""]

        self._requests = Chunk(chunk_rows, _INTS, extra, Path(path) if path else None,
                               nan_columns=phases, max_in_flight=max_in_flight)
        self._queries = Chunk(
            min(chunk_rows, 16384), ("index", "requests", "ok", *_QUERY_TIMES),
            {"missed": np.bool_, "warmup": np.bool_}, Path(query_path) if query_path else None,
            max_in_flight=max_in_flight)
        self._writer = ChunkWriter(background)
        self._phase_names = phases
        self._phase_columns = [self._requests.arrays[name] for name in phases]
        self._phase_slot = {p: i for i, p in enumerate(SERVER_PHASES)}
        self.closed = False
        self._requests.prepare(self._request_table(self._requests.view()))
        self._queries.prepare(self._query_table(self._queries.view()))

    @property
    def path(self) -> Path | None:
        """The Parquet file of request records, if any."""
        return self._requests.path

    @property
    def query_path(self) -> Path | None:
        """The Parquet file of query records, if any."""
        return self._queries.path

    @property
    def requests_recorded(self) -> int:
        """Request records added so far (warm-up included)."""
        return self._requests.rows_handed + self._requests.size

    @property
    def queries_recorded(self) -> int:
        """Query records added so far (warm-up included)."""
        return self._queries.rows_handed + self._queries.size

    def chunks(self) -> tuple[Chunk, Chunk]:
        """The in-memory request and query chunks (``arrays``, ``size``, ``on_reuse``), for a
        live reader that slices new rows off them (``load.live``)."""
        return self._requests, self._queries

    def add(self, index: int, query: int, intended_ns: int, dispatched_ns: int,
            outcome: Outcome, rows: int, warmup: bool, base_ns: int) -> None:
        """Record one finished request; ``base_ns`` is the run's start (absolute ns)."""
        cols = self._requests.arrays
        i = self._requests.size
        cols["index"][i] = index
        cols["query"][i] = query
        cols["intended_ns"][i] = intended_ns - base_ns
        cols["dispatched_ns"][i] = dispatched_ns - base_ns if dispatched_ns else -1
        cols["sent_ns"][i] = outcome.sent_ns - base_ns if outcome.sent_ns else -1
        cols["written_ns"][i] = outcome.written_ns - base_ns if outcome.written_ns else -1
        cols["first_byte_ns"][i] = outcome.first_byte_ns - base_ns if outcome.first_byte_ns else -1
        cols["done_ns"][i] = outcome.done_ns - base_ns if outcome.done_ns else -1
        cols["status"][i] = outcome.status
        code = self._code_ids.get(outcome.code)
        if code is None:
            code = _intern(self._code_ids, self._code_names, outcome.code)
        cols["code"][i] = code
        kind_id = self._kind_ids.get(outcome.error_kind)
        if kind_id is None:
            kind_id = _intern(self._kind_ids, self._kind_names, outcome.error_kind)
        cols["error_kind"][i] = kind_id
        cols["request_bytes"][i] = outcome.request_bytes
        cols["response_bytes"][i] = outcome.response_bytes
        cols["rows"][i] = rows
        cols["warmup"][i] = warmup
        if outcome.server_timing_ms:
            slots = self._phase_slot
            for phase, ms in outcome.server_timing_ms.items():
                slot = slots.get(phase)
                if slot is not None:
                    self._phase_columns[slot][i] = ms
        if outcome.status != Status.OK and not warmup:
            kind = outcome.error_kind or outcome.status.name.lower()
            self.stats.note_error(kind, outcome.error_message)
        self._requests.size = i + 1
        if i + 1 == self._requests.chunk_rows:
            self._flush_requests()

    def add_query(self, index: int, intended_ns: int, done_ns: int, requests: int, ok: int,
                  missed: bool, warmup: bool, base_ns: int) -> None:
        """Record one finished query (fan-out); times are absolute ns like ``add``'s."""
        cols = self._queries.arrays
        i = self._queries.size
        cols["index"][i] = index
        cols["intended_ns"][i] = intended_ns - base_ns
        cols["done_ns"][i] = done_ns - base_ns
        cols["requests"][i] = requests
        cols["ok"][i] = ok
        cols["missed"][i] = missed
        cols["warmup"][i] = warmup
        self._queries.size = i + 1
        if i + 1 == self._queries.chunk_rows:
            self._flush_queries()

    # ------------------------------------------------------------------ folding chunks

    # Both flushes run on the caller's thread (the event loop) and only swap arrays; the
    # folding and writing happen in the writer thread, one chunk after another.

    def _flush_requests(self) -> None:
        chunk = self._requests
        if not chunk.size:
            return
        full, size = chunk.swap()
        self._phase_columns = [chunk.arrays[name] for name in self._phase_names]

        def work() -> None:
            view = chunk.view(full, size)
            self._fold(view)
            chunk.write(self._request_table(view))

        self._writer.submit(work, lambda: chunk.release(full))

    def _flush_queries(self) -> None:
        chunk = self._queries
        if not chunk.size:
            return
        full, size = chunk.swap()

        def work() -> None:
            view = chunk.view(full, size)
            measured = ~view["warmup"]
            stats = self.stats
            stats.queries += int(measured.sum())
            stats.queries_ok += int((measured & (view["ok"] == view["requests"])).sum())
            stats.deadline_misses += int((measured & view["missed"]).sum())
            latency_us = (view["done_ns"][measured] - view["intended_ns"][measured]) / 1e3
            stats.histograms["query_latency"].record_many(latency_us)
            chunk.write(self._query_table(view))

        self._writer.submit(work, lambda: chunk.release(full))

    def _fold(self, v: Arrays) -> None:
        """Add one chunk's measured records to the statistics, vectorised (writer thread)."""
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

    def _request_table(self, v: Arrays) -> dict[str, Any]:
        import pyarrow as pa

        table: dict[str, Any] = {
            "index": pa.array(v["index"]),
            "query": pa.array(v["query"], mask=v["query"] < 0),
            "worker": pa.array(np.full(len(v["index"]), self.worker, np.int16)),
            "warmup": pa.array(v["warmup"]),
        }
        for name in _TIMES:
            table[name] = _timestamps(v[name])
        # Through a dictionary: Arrow expands it without the GIL, which the event loop needs.
        names = pa.array(_STATUS_NAMES.tolist(), type=pa.string())
        table["status"] = pa.DictionaryArray.from_arrays(pa.array(v["status"]), names).cast(
            pa.string())
        for name, texts in (("code", self._code_names), ("error_kind", self._kind_names)):
            table[name] = pa.DictionaryArray.from_arrays(
                pa.array(v[name]), pa.array(list(texts), type=pa.string())).cast(pa.string())
        for name in ("request_bytes", "response_bytes"):
            table[name] = pa.array(v[name])
        table["rows"] = pa.array(v["rows"])
        for phase in SERVER_PHASES:
            table[f"server_{phase}_ms"] = pa.array(v[f"server_{phase}_ms"])
        return table

    def _query_table(self, v: Arrays) -> dict[str, Any]:
        import pyarrow as pa

        return {
            "index": pa.array(v["index"]),
            "worker": pa.array(np.full(len(v["index"]), self.worker, np.int16)),
            "warmup": pa.array(v["warmup"]),
            "intended_ns": pa.array(v["intended_ns"]),
            "done_ns": pa.array(v["done_ns"]),
            "requests": pa.array(v["requests"].astype(np.int32)),
            "ok": pa.array(v["ok"].astype(np.int32)),
            "missed": pa.array(v["missed"]),
        }

    def close(self) -> RunStats:
        """Fold and write what is left, wait for the writer, close the files and return the
        statistics; a failure of the writer thread is raised here."""
        if not self.closed:
            self.closed = True
            self._flush_requests()
            self._flush_queries()
            try:
                self._writer.join()
            except BaseException:
                with contextlib.suppress(Exception):  # the writer's own error is the story
                    self._close_files()
                raise
            self._close_files()
        elif self._writer.error is not None:
            raise self._writer.error
        return self.stats

    def _close_files(self) -> None:
        self._requests.close(lambda: self._request_table(self._requests.view()))
        self._queries.close(lambda: self._query_table(self._queries.view()))


def read_records(paths: str | Path | Iterable[str | Path]) -> Any:
    """All records of one or more Parquet files (e.g. the workers' parts) as one pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    tables = [pq.read_table(str(p)) for p in items]
    return pa.concat_tables(tables) if tables else pa.table({})

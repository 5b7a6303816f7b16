"""Raw per-request records in bounded columnar chunks, and the statistics folded from them.

Every request of a run ends as one record. ``Recorder.add`` writes its fields into numpy
columns of a fixed chunk size; a full chunk is handed over whole (``load.chunks``) to be
(1) folded into the run's statistics — histograms of the end-to-end latency and of every
phase, the per-second interval series, counters and byte sums — and (2) appended to a
Parquet file as one row group, in order (``load.sink``). With ``background`` on (the default)
that work happens in a separate writer process and the event loop never waits for it; memory
stays at one chunk however long the run. The statistics are complete once ``close()`` has
returned; a failure of the writer is raised there.

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

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.load.chunks import (
    Chunk,
    Layout,
    WriterProcess,
    make_spill_dir,
    remove_spill_dir,
)
from modelcaliper.load.sink import (
    ENDED,
    QUERY_EXTRA,
    QUERY_INTS,
    REQUEST_EXTRA,
    REQUEST_INTS,
    REQUEST_NAN_COLUMNS,
    RecordSink,
    SinkSettings,
)
from modelcaliper.load.transport import Outcome, Status
from modelcaliper.server.timing import PHASES as SERVER_PHASES
from modelcaliper.stats.histogram import DEFAULT_LAYOUT, Histogram
from modelcaliper.stats.intervals import IntervalSeries

__all__ = [
    "CLIENT_PHASES",
    "DEFAULT_CHUNK_ROWS",
    "ENDED",
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

def _intern(ids: dict[str, int], names: list[str], text: str) -> int:
    """The id of ``text`` in ``ids``/``names``, added when new."""
    ids[text] = len(names)
    names.append(text)
    return ids[text]


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


class Recorder:
    """Collects one worker's request and query records in bounded chunks; see the module doc.

    ``background=False`` folds and writes each full chunk at once, in the caller's thread
    (tests, tools); the default hands it to the writer process of ``load.chunks``.
    """

    def __init__(self, *, worker: int = 0, path: str | Path | None = None,
                 query_path: str | Path | None = None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, background: bool = True) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
        self.worker = worker
        self.stats = RunStats()
        self.settings = SinkSettings(worker, Path(path) if path else None,
                                     Path(query_path) if query_path else None)
        self.background = background
        # The writer process's own CPU seconds and peak memory, known after close().
        self.writer_usage: dict[str, float] = {"cpu_s": 0.0, "peak_rss_mb": 0.0}
        # code and error_kind are kept as ids of interned texts (no Python string per row).
        self._code_ids: dict[str, int] = {"": 0}
        self._code_names: list[str] = [""]
        self._kind_ids: dict[str, int] = {"": 0}
        self._kind_names: list[str] = [""]
        self._texts_sent = (0, 0)
        self._layouts = {
            "requests": Layout(chunk_rows, REQUEST_INTS, REQUEST_EXTRA, REQUEST_NAN_COLUMNS),
            "queries": Layout(min(chunk_rows, 16384), QUERY_INTS, QUERY_EXTRA),
        }
        for file in (self.settings.path, self.settings.query_path):
            if file is not None:  # an unusable folder fails here, before any load is sent
                file.parent.mkdir(parents=True, exist_ok=True)
        self._spill_dir = make_spill_dir(self.settings.path) if background else None
        # With spill files: the set being filled and one spare, made now rather than mid-run.
        spare = 2 if background else 0
        self._requests = Chunk(self._layouts["requests"], "requests", self._spill_dir, spare)
        self._queries = Chunk(self._layouts["queries"], "queries", self._spill_dir, spare)
        weakref.finalize(self, remove_spill_dir, self._spill_dir)  # also if never closed
        self._local: RecordSink | None = None  # folds here: background off, or no writer yet
        self._writer: WriterProcess | None = None
        if background and self.settings.path is not None:
            self._writer = WriterProcess(self.settings, self._layouts)
        self._phase_names = REQUEST_NAN_COLUMNS
        self._phase_columns = [self._requests.arrays[name] for name in self._phase_names]
        self._phase_slot = {p: i for i, p in enumerate(SERVER_PHASES)}
        self.closed = False
        self._error: BaseException | None = None

    @property
    def path(self) -> Path | None:
        """The Parquet file of request records, if any."""
        return self.settings.path

    @property
    def query_path(self) -> Path | None:
        """The Parquet file of query records, if any."""
        return self.settings.query_path

    @property
    def requests_recorded(self) -> int:
        """Request records added so far (warm-up included)."""
        return self._requests.rows_handed + self._requests.size

    @property
    def queries_recorded(self) -> int:
        """Query records added so far (warm-up included)."""
        return self._queries.rows_handed + self._queries.size

    def chunks(self) -> tuple[Chunk, Chunk]:
        """The request and query chunks being filled (``arrays``, ``size``, ``on_reuse``), for
        a live reader that slices new rows off them (``load.live``)."""
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
            del cols
            self._hand_over(self._requests)
            self._phase_columns = [self._requests.arrays[name] for name in self._phase_names]

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
            del cols
            self._hand_over(self._queries)

    # ------------------------------------------------------------------ full chunks

    def _new_texts(self) -> tuple[list[str], list[str]]:
        codes, kinds = self._texts_sent
        self._texts_sent = (len(self._code_names), len(self._kind_names))
        return self._code_names[codes:], self._kind_names[kinds:]

    def _fold_here(self, chunk: Chunk) -> None:
        """Fold and write the chunk's rows in this process (and clear it for reuse)."""
        if self._local is None:
            self._local = RecordSink(self.settings)
        self._local.add_texts(*self._new_texts())
        if self._error is None:
            view = Layout.view(chunk.arrays, chunk.size)
            try:
                (self._local.requests if chunk.kind == "requests" else self._local.queries)(view)
            except BaseException as exc:  # noqa: BLE001 - raised at close, like the writer's
                self._error = exc
        chunk.restart()

    def _hand_over(self, chunk: Chunk) -> None:
        """A full (or, at close, the last) chunk goes to be folded and written."""
        if not chunk.size:
            return
        if not self.background:
            self._fold_here(chunk)
            return
        if self._writer is None:
            self._writer = WriterProcess(self.settings, self._layouts)
        for kind, path in self._writer.collect():
            (self._requests if kind == "requests" else self._queries).give_back([path])
        path, size = chunk.take_full()
        self._writer.hand_over(chunk.kind, path, size, *self._new_texts())

    def close(self) -> RunStats:
        """Fold and write what is left, wait for the writer, close the files and return the
        statistics; a failure of the writer is raised here (and on every later call)."""
        if self.closed:
            if self._error is not None:
                raise self._error
            return self.stats
        self.closed = True
        try:
            if self._writer is None:  # nothing handed over yet: the rest is folded here
                for chunk in (self._requests, self._queries):
                    self._fold_here(chunk)
                sink = self._local if self._local is not None else RecordSink(self.settings)
                if self._error is None:
                    try:
                        sink.close(self._layouts["requests"].empty(),
                                   self._layouts["queries"].empty())
                    except BaseException as exc:  # noqa: BLE001 - raised below
                        self._error = exc
                folded = sink.stats
            else:
                for chunk in (self._requests, self._queries):
                    self._hand_over(chunk)
                folded, error, self.writer_usage = self._writer.close()
                self._error = self._error or error
        except BaseException as exc:
            self._error = self._error or exc
            raise
        finally:
            for chunk in (self._requests, self._queries):
                chunk.arrays, chunk.size = chunk.layout.empty(), 0  # unmaps the spill file
            self._phase_columns = []
            remove_spill_dir(self._spill_dir)
        self.stats.merge(folded)
        if self._error is not None:
            raise self._error
        return self.stats


def read_records(paths: str | Path | Iterable[str | Path]) -> Any:
    """All records of one or more Parquet files (e.g. the workers' parts) as one pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    tables = [pq.read_table(str(p)) for p in items]
    return pa.concat_tables(tables) if tables else pa.table({})

"""Fixed-size column chunks for records, and the one background thread that folds and writes them.

A ``Chunk`` is a set of numpy columns the event loop fills row by row. When it is full, the
recorder *swaps* it: the full arrays go to a ``ChunkWriter`` — one thread that folds them into
the statistics and appends them to Parquet, in the order they were handed over — and the loop
goes on filling a fresh set at once. Folding and writing a 65 536-row chunk takes 50–150 ms of
CPU; on the loop, that stalled every send due meanwhile (schedule lag in steps of that size).

Memory stays bounded: a chunk keeps at most ``MAX_CHUNKS_IN_FLIGHT`` full sets waiting for or
in the writer, plus the one being filled, and a set comes back for reuse once written. When the
writer falls behind, the swap waits for a set to come back rather than allocating more.

The writer thread runs ``WRITER_NICE`` steps nicer than the loop, so on a core shared with
the event loop the loop gets most of the CPU while the writer still keeps up. The GIL is the
other thing they share: numpy and pyarrow release it for most of the work, and the recorder
keeps text columns as ids of interned strings so that no step of the writer holds it for
long (converting 65 536 Python strings would hold it for ~3 ms).
A failure in the writer (a full disk, say) is kept and raised by ``ChunkWriter.join``, at the
recorder's close; later chunks are then dropped, their sets still recycled, so the run itself
never blocks on a dead writer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_CHUNKS_IN_FLIGHT", "WRITER_NICE", "Chunk", "ChunkWriter"]

MAX_CHUNKS_IN_FLIGHT = 2
"""Full chunks (per record kind) queued for or inside the writer before a swap waits."""

WRITER_NICE = 5
"""How much nicer than the event loop the writer thread runs (Linux thread priority)."""

Arrays = dict[str, np.ndarray]


class Chunk:
    """Fixed-size numpy columns the loop fills, swapped for a fresh set when full."""

    def __init__(self, chunk_rows: int, ints: Iterable[str], extra: Mapping[str, Any],
                 path: Path | None, *, nan_columns: Iterable[str] = (),
                 max_in_flight: int = MAX_CHUNKS_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be ≥ 1, got {max_in_flight}")
        self.chunk_rows = chunk_rows
        self._dtypes: dict[str, Any] = {name: np.int64 for name in ints}
        self._dtypes.update(extra)
        self._nan_columns = tuple(nan_columns)
        self.max_sets = max_in_flight + 1
        self.sets_allocated = 0
        self.arrays: Arrays = self._new_arrays()
        self.size = 0
        self.rows_handed = 0  # rows swapped out to the writer
        self.path = path
        self._parquet: Any = None
        self._free: queue.SimpleQueue[Arrays] = queue.SimpleQueue()
        self.on_reuse: Callable[[], None] | None = None  # told before the arrays are swapped

    def _new_arrays(self) -> Arrays:
        arrays = {name: np.empty(self.chunk_rows, dtype) for name, dtype in self._dtypes.items()}
        self.sets_allocated += 1
        self.clear(arrays)
        return arrays

    def clear(self, arrays: Arrays) -> None:
        """Reset the columns whose "not reported" value is NaN."""
        for name in self._nan_columns:
            arrays[name].fill(np.nan)

    def view(self, arrays: Arrays | None = None, size: int | None = None) -> Arrays:
        """The filled part of every column (of the current set unless given)."""
        if arrays is None:
            arrays, size = self.arrays, self.size
        return {name: array[:size] for name, array in arrays.items()}

    def swap(self) -> tuple[Arrays, int]:
        """Hand the current set and its row count out and install a fresh set.

        Tells ``on_reuse`` first (a live reader copies the rows it has not taken yet). The
        fresh set is a written one coming back, a new one while fewer than ``max_sets``
        exist, or else the next one the writer releases: this waits rather than grows.
        """
        if self.on_reuse is not None:
            self.on_reuse()
        full, size = self.arrays, self.size
        try:
            fresh = self._free.get_nowait()
        except queue.Empty:
            fresh = self._new_arrays() if self.sets_allocated < self.max_sets else self._free.get()
        self.arrays, self.size = fresh, 0
        self.rows_handed += size
        return full, size

    def release(self, arrays: Arrays) -> None:
        """Give a written set back for reuse (called by the writer thread)."""
        self.clear(arrays)
        self._free.put(arrays)

    def prepare(self, empty_columns: dict[str, Any]) -> None:
        """Open the Parquet file now, with the schema of these (empty) columns, so the first
        chunk's write does not pay for it (and Arrow's conversions are loaded before a run)."""
        if self.path is None or self._parquet is not None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = pq.ParquetWriter(str(self.path), pa.table(empty_columns).schema,
                                         compression="zstd")

    def write(self, table_columns: dict[str, Any]) -> None:
        """Append one chunk's rows to the Parquet file (if any) as one row group."""
        if self.path is None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(table_columns)
        if not table.num_rows:
            return
        if self._parquet is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._parquet = pq.ParquetWriter(str(self.path), table.schema, compression="zstd")
        self._parquet.write_table(table)

    def close(self, empty_columns: Callable[[], dict[str, Any]]) -> None:
        """Close the file; a run without records still gets a file with the right columns."""
        if self.path is None:
            return
        if self._parquet is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(empty_columns()), str(self.path), compression="zstd")
            return
        self._parquet.close()
        self._parquet = None


def _lower_priority() -> None:
    """Make the calling thread ``WRITER_NICE`` steps nicer than the rest of the process (Linux:
    nice is per thread). Not ``SCHED_IDLE``: the driver spins between close sends, so an idle
    policy would starve the writer until the swap blocked the loop on it."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid)
                           + WRITER_NICE)


class ChunkWriter:
    """Runs (work, release) jobs in order on one background thread (or inline), see module doc."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self.error: BaseException | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, work: Callable[[], None], release: Callable[[], None]) -> None:
        """Queue ``work`` (skipped after a failure) and then ``release`` (always run)."""
        if not self.background:
            self._run_one(work, release)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="caliper-recorder",
                                            daemon=True)
            self._thread.start()
        self._jobs.put((work, release))

    def _run_one(self, work: Callable[[], None], release: Callable[[], None]) -> None:
        try:
            if self.error is None:
                work()
        except BaseException as exc:  # noqa: BLE001 - kept and raised by join()
            self.error = exc
        finally:
            release()

    def _loop(self) -> None:
        _lower_priority()
        while (job := self._jobs.get()) is not None:
            self._run_one(*job)

    def join(self) -> None:
        """Wait for every queued job; raise the first failure, if any."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise self.error

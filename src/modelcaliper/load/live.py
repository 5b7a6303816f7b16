"""Live records for a progress display: the rows a recorder added since the last look.

A ``LiveTap`` slices new rows off a ``Recorder``'s in-memory chunks when asked (``take``),
so watching a run costs nothing per request: no callback runs in the send path. When a
full chunk is about to be swapped out for folding and writing (``load.chunks``), the rows
not taken yet are copied aside first, so none is missed. ``take`` is called from the
driver's own event loop (one thread, the one that adds records and swaps chunks), a few
times a second; each call copies only the handful of columns a display needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.load.records import Recorder

__all__ = ["LIVE_QUERY_COLUMNS", "LIVE_REQUEST_COLUMNS", "LiveBatch", "LiveTap", "ProgressHook"]

LIVE_REQUEST_COLUMNS = ("intended_ns", "dispatched_ns", "done_ns", "status", "warmup")
"""Request columns a live batch carries (times in ns from the run's start)."""

LIVE_QUERY_COLUMNS = ("intended_ns", "done_ns", "missed", "warmup")
"""Query columns a live batch carries."""


@dataclass
class LiveBatch:
    """Records one worker finished since its previous batch, and its units launched so far."""

    worker: int
    units_dispatched: int
    requests: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]


ProgressHook = Callable[[LiveBatch], bool | None]
"""Called with each live batch during a run; returning True stops the run (like Ctrl-C)."""


class _ChunkReader:
    """New rows of one reused chunk of columns."""

    def __init__(self, chunk: Any, names: tuple[str, ...]) -> None:
        self.chunk = chunk
        self.names = names
        self.taken = 0
        self.pending: list[dict[str, np.ndarray]] = []
        chunk.on_reuse = self._keep_untaken

    def _slice(self) -> dict[str, np.ndarray]:
        return {n: self.chunk.arrays[n][self.taken:self.chunk.size].copy() for n in self.names}

    def _keep_untaken(self) -> None:
        if self.chunk.size > self.taken:
            self.pending.append(self._slice())
        self.taken = 0

    def take(self) -> dict[str, np.ndarray]:
        parts = [*self.pending, self._slice()]
        self.pending = []
        self.taken = self.chunk.size
        return {n: np.concatenate([part[n] for part in parts]) for n in self.names}


class LiveTap:
    """Hands out the records a ``Recorder`` added since the previous ``take``."""

    def __init__(self, recorder: Recorder) -> None:
        requests, queries = recorder.chunks()
        self.worker = recorder.worker
        self._requests = _ChunkReader(requests, LIVE_REQUEST_COLUMNS)
        self._queries = _ChunkReader(queries, LIVE_QUERY_COLUMNS)

    def take(self, units_dispatched: int = 0) -> LiveBatch:
        """The records added since the previous call, as one batch."""
        return LiveBatch(self.worker, units_dispatched, self._requests.take(),
                         self._queries.take())

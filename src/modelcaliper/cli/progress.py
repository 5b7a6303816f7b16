"""Live progress of ``caliper run``: one updating line on a terminal, periodic lines otherwise.

    12.5/32.0s  sent 625 (50.0 req/s)  p50 1.21ms  p99 3.40ms  errors 0  timeouts 0  misses 0

The load engine hands over the records finished since the last look (``load.live``)
a few times a second; this module folds them. The percentiles are those of the requests
that finished in the last ``window_s`` seconds (5 by default), so the line shows how the
run is going *now*; the counts are totals since the start, warm-up included (the line says
"warm-up" while it lasts). When the generator's schedule lag over the same window has a p99
beyond the limit the summary uses (``load.health``), the line warns that the generator is
late; the final summary says whether it was saturated and why. On a terminal the line is
rewritten in place at most every ``tty_interval_s``; on anything else a plain line is printed
every ``plain_interval_s``. ``--quiet`` turns it off.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any, TextIO

import numpy as np

from modelcaliper.load.health import LAG_P99_LIMIT_MS
from modelcaliper.load.transport import Status
from modelcaliper.runner import ProgressSink

__all__ = ["ProgressLine"]

_FAILED = (int(Status.ERROR), int(Status.MODEL_ERROR))


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}ms" if value >= 100 else f"{value:.3g}ms"


class ProgressLine(ProgressSink):
    """Folds live batches into totals and a recent window, and prints the progress line."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 window_s: float = 5.0, tty_interval_s: float = 0.25,
                 plain_interval_s: float = 5.0, clock: Any = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.window_s = window_s
        self.interval_s = tty_interval_s if self.tty else plain_interval_s
        self.clock = clock
        self.total_s = 0.0
        self.warmup_s = 0.0
        self.unit = "req"
        self.dispatched: dict[int, int] = {}
        self.counts = np.zeros(len(Status), dtype=np.int64)
        self.misses = 0
        self.recent: collections.deque[tuple[float, np.ndarray, np.ndarray]] = \
            collections.deque()
        self.started_at: float | None = None  # our clock at the run's offset 0
        self.last_line = ""
        self._printed_at = -1e18
        self._width = 0

    def start(self, spec: Any, plan: Any) -> None:
        """Take the planned length and the unit (requests or queries) of the run."""
        load = spec.load
        last_s = float(plan.offsets_s[-1]) if len(plan.offsets_s) else 0.0
        self.total_s = max(last_s, load.warmup_s + load.duration_s)
        self.warmup_s = load.warmup_s
        self.unit = "queries" if load.fanout else "req"

    def update(self, batch: Any) -> None:
        """Fold one worker's batch; print the line when it is due."""
        now = self.clock()
        self.dispatched[batch.worker] = batch.units_dispatched
        requests = batch.requests
        status = requests["status"].astype(np.int64)
        if len(status):
            self.counts += np.bincount(status, minlength=len(Status))
            done = requests["done_ns"]
            ended = (done >= 0) & np.isin(status, (0, 1, 2, 5))
            latency_ms = (done[ended] - requests["intended_ns"][ended]) / 1e6
            dispatched = requests["dispatched_ns"]
            sent = dispatched >= 0
            lag_ms = (dispatched[sent] - requests["intended_ns"][sent]) / 1e6
            self.recent.append((now, latency_ms, lag_ms))
            if self.started_at is None and ended.any():
                # Offset 0 in our clock: the latest completion is about "now".
                self.started_at = now - float(done[ended].max()) / 1e9
        queries = batch.queries
        if len(queries["missed"]):
            self.misses += int((queries["missed"] & ~queries["warmup"]).sum())
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()
        if now - self._printed_at >= self.interval_s:
            self._printed_at = now
            self._print(self.render(now))

    def render(self, now: float | None = None) -> str:
        """The progress line as it stands."""
        now = self.clock() if now is None else now
        elapsed_s = max(0.0, now - self.started_at) if self.started_at is not None else 0.0
        sent = sum(self.dispatched.values())
        rate = sent / elapsed_s if elapsed_s > 0.5 else 0.0
        latencies = [r[1] for r in self.recent if len(r[1])]
        lags = [r[2] for r in self.recent if len(r[2])]
        p50 = p99 = lag99 = None
        if latencies:
            window = np.concatenate(latencies)
            p50, p99 = (float(v) for v in np.percentile(window, [50, 99]))
        if lags:
            lag99 = float(np.percentile(np.concatenate(lags), 99))
        counts = self.counts
        parts = [f"{min(elapsed_s, self.total_s):5.1f}/{self.total_s:.1f}s",
                 f"sent {sent} ({rate:.1f} {self.unit}/s)", f"p50 {_ms(p50)}", f"p99 {_ms(p99)}",
                 f"errors {int(sum(counts[i] for i in _FAILED))}",
                 f"timeouts {int(counts[Status.TIMEOUT])}"]
        if self.unit == "queries":
            parts.append(f"misses {self.misses}")
        if counts[Status.DROPPED]:
            parts.append(f"dropped {int(counts[Status.DROPPED])}")
        if self.started_at is not None and elapsed_s < self.warmup_s:
            parts.append("warm-up")
        if lag99 is not None and lag99 > LAG_P99_LIMIT_MS:
            parts.append(f"! generator late (lag p99 {_ms(lag99)})")
        return "  ".join(parts)

    def _print(self, line: str) -> None:
        self.last_line = line
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Clear the line on a terminal (the summary follows); nothing otherwise."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

"""Prometheus metrics of the embedded server, named as TF Serving names them where it can.

TF Serving exports its monitoring counters with ``/`` turned into ``:``; we use the same
names so dashboards and the run's metrics scraper read both servers alike:

    :tensorflow:serving:request_count{model_name,status}           counter
    :tensorflow:serving:request_latency{model_name,API,entrypoint}  histogram, microseconds
    :tensorflow:serving:runtime_latency{model_name,API,runtime}     histogram, microseconds
    :tensorflow:serving:batching_session:queuing_latency{...}       histogram, microseconds
    :tensorflow:serving:batching_session:input_batch_size{...}      histogram, rows

plus ``caliper_server_phase_seconds{phase}`` with every Server-Timing phase, and
``caliper_server_rejected_total{reason}`` for requests refused by overload or size limits.
A tiny writer of the text exposition format; no client library needed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

__all__ = ["Metrics", "exponential_buckets"]


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` upper bounds growing by ``factor`` from ``start``."""
    return tuple(start * factor**i for i in range(count))


LATENCY_US_BUCKETS = exponential_buckets(10.0, 1.8, 33)  # 10 µs .. ~1.4e9 µs
PHASE_S_BUCKETS = exponential_buckets(1e-5, 2.0, 24)  # 10 µs .. ~84 s
BATCH_SIZE_BUCKETS = exponential_buckets(1.0, 2.0, 14)  # 1 .. 8192 rows


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class Metrics:
    """Counters and histograms of one server process, rendered on ``/metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[str, ...], tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Histogram] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def _declare(self, name: str, kind: str, text: str) -> None:
        self._help.setdefault(name, (kind, text))

    def inc(
        self, name: str, labels: dict[str, str], amount: float = 1.0, help_text: str = ""
    ) -> None:
        """Add ``amount`` to a counter."""
        key = (name, tuple(labels), tuple(labels.values()))
        with self._lock:
            self._declare(name, "counter", help_text)
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def observe(
        self,
        name: str,
        labels: dict[str, str],
        value: float,
        buckets: Sequence[float],
        help_text: str = "",
    ) -> None:
        """Record ``value`` in a histogram."""
        key = (name, tuple(labels), tuple(labels.values()))
        with self._lock:
            self._declare(name, "histogram", help_text)
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = _Histogram(buckets)
            hist.observe(value)

    def record_request(
        self,
        *,
        model: str,
        api: str,
        entrypoint: str,
        status: str,
        phases_ms: dict[str, float],
        batch_rows: int,
    ) -> None:
        """Record one finished request under TF Serving's names and ours."""
        self.inc(
            ":tensorflow:serving:request_count",
            {"model_name": model, "status": status},
            help_text="The number of requests, by model and status.",
        )
        total_ms = phases_ms.get("total")
        if total_ms is not None:
            self.observe(
                ":tensorflow:serving:request_latency",
                {"model_name": model, "API": api, "entrypoint": entrypoint},
                total_ms * 1000.0,
                LATENCY_US_BUCKETS,
                "Distribution of request latency in microseconds.",
            )
        compute_ms = phases_ms.get("compute")
        if compute_ms is not None:
            self.observe(
                ":tensorflow:serving:runtime_latency",
                {"model_name": model, "API": api, "runtime": "embedded"},
                compute_ms * 1000.0,
                LATENCY_US_BUCKETS,
                "Distribution of model run time in microseconds.",
            )
        if "queue" in phases_ms:
            self.observe(
                ":tensorflow:serving:batching_session:queuing_latency",
                {"thread_pool_name": model},
                phases_ms["queue"] * 1000.0,
                LATENCY_US_BUCKETS,
                "Time a request waited for a model slot, in microseconds.",
            )
        if batch_rows:
            self.observe(
                ":tensorflow:serving:batching_session:input_batch_size",
                {"model_name": model},
                float(batch_rows),
                BATCH_SIZE_BUCKETS,
                "Rows per request.",
            )
        for phase, ms in phases_ms.items():
            self.observe(
                "caliper_server_phase_seconds",
                {"phase": phase},
                ms / 1000.0,
                PHASE_S_BUCKETS,
                "Server-side request phases (Server-Timing), in seconds.",
            )

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines: list[str] = []
            names = sorted({k[0] for k in self._counters} | {k[0] for k in self._histograms})
            for name in names:
                kind, text = self._help[name]
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                for (n, lnames, lvalues), value in sorted(self._counters.items()):
                    if n == name:
                        lines.append(f"{name}{_labels(lnames, lvalues)} {value:g}")
                for (n, lnames, lvalues), hist in sorted(
                    self._histograms.items(), key=lambda item: item[0]
                ):
                    if n != name:
                        continue
                    running = 0
                    for bound, count in zip(hist.buckets, hist.counts, strict=False):
                        running += count
                        le = f'le="{bound:.6g}"'
                        lines.append(f"{name}_bucket{_labels(lnames, lvalues, le)} {running}")
                    running += hist.counts[-1]
                    inf = 'le="+Inf"'
                    lines.append(f"{name}_bucket{_labels(lnames, lvalues, inf)} {running}")
                    lines.append(f"{name}_sum{_labels(lnames, lvalues)} {hist.total:.6g}")
                    lines.append(f"{name}_count{_labels(lnames, lvalues)} {running}")
            return "\n".join(lines) + "\n"

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
from typing import Any

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
        self._request_series: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}
        self._phase_series: dict[str, _Histogram] = {}

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
        """Record one finished request under TF Serving's names and ours.

        This runs for every request, so the series it touches are looked up once per
        (model, API, entrypoint, status) and phase, and updated under one lock acquisition.
        """
        series = self._request_series.get((model, api, entrypoint, status))
        if series is None:
            series = self._declare_request_series(model, api, entrypoint, status)
        count_key, latency, runtime, queue, rows = series
        with self._lock:
            self._counters[count_key] += 1.0
            total_ms = phases_ms.get("total")
            if total_ms is not None:
                latency.observe(total_ms * 1000.0)
            compute_ms = phases_ms.get("compute")
            if compute_ms is not None:
                runtime.observe(compute_ms * 1000.0)
            queue_ms = phases_ms.get("queue")
            if queue_ms is not None:
                queue.observe(queue_ms * 1000.0)
            if batch_rows:
                rows.observe(float(batch_rows))
            phase_series = self._phase_series
            for phase, ms in phases_ms.items():
                hist = phase_series.get(phase)
                if hist is None:
                    hist = self._histogram_locked(
                        ("caliper_server_phase_seconds", ("phase",), (phase,)), PHASE_S_BUCKETS,
                        "Server-side request phases (Server-Timing), in seconds.")
                    phase_series[phase] = hist
                hist.observe(ms / 1000.0)

    def _histogram_locked(self, key: tuple[str, tuple[str, ...], tuple[str, ...]],
                          buckets: Sequence[float], help_text: str) -> _Histogram:
        self._declare(key[0], "histogram", help_text)
        hist = self._histograms.get(key)
        if hist is None:
            hist = self._histograms[key] = _Histogram(buckets)
        return hist

    def _declare_request_series(self, model: str, api: str, entrypoint: str,
                                status: str) -> tuple[Any, ...]:
        with self._lock:
            count_key = (":tensorflow:serving:request_count", ("model_name", "status"),
                         (model, status))
            self._declare(count_key[0], "counter", "The number of requests, by model and status.")
            self._counters.setdefault(count_key, 0.0)
            latency = self._histogram_locked(
                (":tensorflow:serving:request_latency", ("model_name", "API", "entrypoint"),
                 (model, api, entrypoint)), LATENCY_US_BUCKETS,
                "Distribution of request latency in microseconds.")
            runtime = self._histogram_locked(
                (":tensorflow:serving:runtime_latency", ("model_name", "API", "runtime"),
                 (model, api, "embedded")), LATENCY_US_BUCKETS,
                "Distribution of model run time in microseconds.")
            queue = self._histogram_locked(
                (":tensorflow:serving:batching_session:queuing_latency", ("thread_pool_name",),
                 (model,)), LATENCY_US_BUCKETS,
                "Time a request waited for a model slot, in microseconds.")
            rows = self._histogram_locked(
                (":tensorflow:serving:batching_session:input_batch_size", ("model_name",),
                 (model,)), BATCH_SIZE_BUCKETS, "Rows per request.")
            series = (count_key, latency, runtime, queue, rows)
            self._request_series[(model, api, entrypoint, status)] = series
            return series

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

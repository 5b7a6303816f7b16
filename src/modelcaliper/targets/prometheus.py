"""The target's own view: scrape its Prometheus metrics before and after a run, and diff them.

The format itself (parsing, histograms, quantile estimation) is in ``exposition``.

**Diffing.** Counters and histograms are cumulative since the server started, so a run's
share is *after − before*: counters become deltas; a histogram's buckets become delta
buckets, from which the mean (Δsum / Δcount) and p50/p90/p99 are estimated the way
Prometheus' ``histogram_quantile`` does it (``exposition.bucket_quantile``). A series that
went backwards (a server restart) is taken from the *after* scrape alone and marked
``reset``. Triton exports cumulative counters instead of histograms; their means come from
the counters (e.g. Δqueue µs / Δrequests).

**Classifying.** Known series are sorted into the kinds a report shows next to the client's
view — ``request_latency_ms``, ``runtime_latency_ms``, ``queue_latency_ms``,
``batch_size_rows``, ``phases_ms`` — with times normalised to milliseconds (TF Serving's are
µs, ours and KServe's seconds); any other histogram that moved goes to ``other``, in ms when
its name tells the unit. A missing or unreachable endpoint is not an error: the result
says ``"available": false`` and why.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from modelcaliper.targets.exposition import (
    Exposition,
    Histogram,
    Labels,
    bucket_quantile,
    histograms_of,
    parse_exposition,
)

__all__ = [
    "KINDS",
    "MetricsScraper",
    "Scrape",
    "scrape",
    "server_histograms",
    "unavailable",
]

_MAX_BYTES = 32 * 1024 * 1024
QUANTILES = (50, 90, 99)


def _delta(before: Histogram | None, after: Histogram) -> tuple[Histogram, bool]:
    """``after − before``; ``after`` alone (and True) when the series went backwards."""
    if before is None:
        return after, False
    old, new = before.sorted_buckets(), after.sorted_buckets()
    if [b for b, _ in old] != [b for b, _ in new] or any(
            n < o for (_, o), (_, n) in zip(old, new, strict=True)) or after.count < before.count:
        return after, True
    delta = Histogram(after.name, after.labels,
                      [(b, n - o) for (b, o), (_, n) in zip(old, new, strict=True)],
                      after.sum - before.sum, after.count - before.count)
    return delta, False


# ---------------------------------------------------------------------- classification

# name → (kind, factor to ms — or to rows for batch sizes)
_KNOWN: dict[str, tuple[str, float]] = {
    ":tensorflow:serving:request_latency": ("request_latency_ms", 1e-3),
    ":tensorflow:serving:runtime_latency": ("runtime_latency_ms", 1e-3),
    ":tensorflow:core:graph_run_time_usecs_histogram": ("runtime_latency_ms", 1e-3),
    ":tensorflow:serving:batching_session:queuing_latency": ("queue_latency_ms", 1e-3),
    ":tensorflow:serving:batching_session:input_batch_size": ("batch_size_rows", 1.0),
    ":tensorflow:serving:batching_session:processed_batch_size": ("batch_size_rows", 1.0),
    "caliper_server_phase_seconds": ("phases_ms", 1e3),
    "request_predict_seconds": ("runtime_latency_ms", 1e3),  # KServe model servers
    "request_preprocess_seconds": ("phases_ms", 1e3),
    "request_postprocess_seconds": ("phases_ms", 1e3),
    "request_explain_seconds": ("phases_ms", 1e3),
    "rest_server_requests_duration_seconds": ("request_latency_ms", 1e3),  # MLServer
    "grpc_server_handling_seconds": ("request_latency_ms", 1e3),
    "nv_inference_first_response_histogram_ms": ("request_latency_ms", 1.0),  # Triton
}
_UNIT_SUFFIXES = (("_seconds", 1e3), ("_milliseconds", 1.0), ("_ms", 1.0),
                  ("_microseconds", 1e-3), ("_usecs", 1e-3), ("_us", 1e-3),
                  ("_nanoseconds", 1e-6), ("_ns", 1e-6))
KINDS = ("request_latency_ms", "runtime_latency_ms", "queue_latency_ms", "batch_size_rows",
         "phases_ms", "other")

# Triton: cumulative µs counters per model, divided by the requests (or executions) they cover.
_TRITON_MEANS = (
    ("request_latency_ms", "nv_inference_request_duration_us", "nv_inference_request_success",
     1e-3),
    ("queue_latency_ms", "nv_inference_queue_duration_us", "nv_inference_request_success",
     1e-3),
    ("runtime_latency_ms", "nv_inference_compute_infer_duration_us",
     "nv_inference_request_success", 1e-3),
    ("batch_size_rows", "nv_inference_count", "nv_inference_exec_count", 1.0),
)


def _kind_of(name: str) -> tuple[str, float | None]:
    if name in _KNOWN:
        return _KNOWN[name]
    for suffix, factor in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return "other", factor
    return "other", None


def _finite(value: float) -> float | None:
    """``value`` to 6 significant digits (what exporters print), None when not finite."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _compact(buckets: list[tuple[float, float]], scale: float) -> list[list[float | int]]:
    """Finite buckets from the last empty one to the first full one (the rest repeat)."""
    finite = [(b, c) for b, c in buckets if math.isfinite(b)]
    total = buckets[-1][1] if buckets else 0.0
    first = max((i for i, (_, c) in enumerate(finite) if c <= 0), default=0)
    last = next((i for i, (_, c) in enumerate(finite) if c >= total), len(finite) - 1)
    return [[_finite(b * scale) or 0.0, int(c)] for b, c in finite[first:last + 1]]


def _entry(hist: Histogram, kind: str, factor: float | None, reset: bool) -> dict[str, Any]:
    scale = factor if factor is not None else 1.0
    buckets = hist.sorted_buckets()
    count = hist.count if math.isfinite(hist.count) else (buckets[-1][1] if buckets else 0.0)
    mean = hist.sum / count * scale if count > 0 and math.isfinite(hist.sum) else math.nan
    labels = dict(hist.labels)
    if kind == "phases_ms" and hist.name.startswith("request_"):  # KServe's steps
        labels.setdefault("phase", hist.name[len("request_"):-len("_seconds")])
    entry: dict[str, Any] = {"metric": hist.name, "labels": labels, "count": int(count),
                             "mean": _finite(mean)}
    for q in QUANTILES:
        value = bucket_quantile(q / 100, buckets) if buckets else None
        entry[f"p{q}"] = _finite(value * scale) if value is not None else None
    if buckets:
        entry["buckets"] = _compact(buckets, scale)
    if factor is None:
        entry["unit"] = None  # the name does not say; values as exported
    if reset:
        entry["reset"] = True
    return entry


def _series_key(name: str, labels: Labels) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}}" if inner else name


def _counter_names(exposition: Exposition) -> set[str]:
    names = {s.name for s in exposition.samples if s.name.endswith("_total")}
    for family, kind in exposition.types.items():
        if kind == "counter":
            names |= {family, f"{family}_total"}
    return names


def _triton_means(deltas: dict[tuple[str, Labels], float]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, total_name, count_name, factor in _TRITON_MEANS:
        for (name, labels), total in deltas.items():
            if name != total_name:
                continue
            count = deltas.get((count_name, labels), 0.0)
            if count > 0:
                out[kind].append({"metric": total_name, "labels": dict(labels),
                                  "count": int(count), "mean": _finite(total / count * factor),
                                  "p50": None, "p90": None, "p99": None, "source": "counters"})
    return out


def server_histograms(before: Scrape, after: Scrape) -> dict[str, Any]:
    """The run's share of the server's metrics: counter deltas and histogram estimates."""
    if after.exposition is None or before.exposition is None:
        return unavailable(after.error or before.error or "no scrape", after.url)
    old, new = before.exposition, after.exposition
    kinds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    resets: list[str] = []
    old_hists = histograms_of(old)
    for key, hist in sorted(histograms_of(new).items()):
        delta, reset = _delta(old_hists.get(key), hist)
        kind, factor = _kind_of(hist.name)
        entry = _entry(delta, kind, factor, reset)
        if entry["count"] > 0:
            kinds[kind].append(entry)
        if reset:
            resets.append(_series_key(*key))
    counters = _counter_names(new)
    old_values = old.values()
    deltas: dict[tuple[str, Labels], float] = {}
    for sample in new.samples:
        if sample.name in counters:
            previous = old_values.get((sample.name, sample.labels), 0.0)
            if sample.value < previous:
                resets.append(_series_key(sample.name, sample.labels))
                previous = 0.0
            deltas[(sample.name, sample.labels)] = sample.value - previous
    for kind, entries in _triton_means(deltas).items():
        kinds[kind].extend(entries)
    return {
        "available": True,
        "url": after.url,
        "window_s": round(after.at_s - before.at_s, 3),
        "histograms": kinds,
        "counters": {_series_key(*key): value for key, value in sorted(deltas.items())
                     if value},
        "resets": resets,
    }


# ---------------------------------------------------------------------- scraping


@dataclass(frozen=True)
class Scrape:
    """One scrape of a metrics URL: when, and the parsed exposition or why there is none."""

    url: str
    at_s: float
    exposition: Exposition | None = None
    error: str | None = None


def unavailable(reason: str, url: str | None = None) -> dict[str, Any]:
    """The result for a run whose server metrics could not be had, saying why."""
    return {"available": False, "url": url, "reason": reason}


def scrape(url: str, timeout_s: float = 2.0) -> Scrape:
    """GET ``url`` and parse it; never raises for network, HTTP or format trouble."""
    at_s = time.time()
    request = urllib.request.Request(url, headers={"accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            kind = answer.headers.get("content-type", "")
            body = answer.read(_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        return Scrape(url, at_s, error=f"{url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Scrape(url, at_s, error=f"cannot reach {url}: {getattr(exc, 'reason', exc)}")
    if len(body) > _MAX_BYTES:
        return Scrape(url, at_s, error=f"{url} sent more than {_MAX_BYTES >> 20} MiB of metrics")
    if "html" in kind.lower():
        return Scrape(url, at_s, error=f"{url} answered HTML, not Prometheus metrics")
    exposition = parse_exposition(body.decode("utf-8", "replace"))
    if not exposition.samples and (exposition.skipped or not exposition.types):
        return Scrape(url, at_s, error=f"{url} did not answer in the Prometheus text format")
    return Scrape(url, at_s, exposition)


class MetricsScraper:
    """Scrapes a target's metrics before and after a run; ``after()`` returns the diff."""

    def __init__(self, url: str | None, *, reason: str = "the target has no known metrics URL",
                 timeout_s: float = 2.0) -> None:
        self.url = url
        self.reason = reason
        self.timeout_s = timeout_s
        self._before: Scrape | None = None

    def before(self) -> Scrape | None:
        """Scrape once before the load starts."""
        if self.url is not None:
            self._before = scrape(self.url, self.timeout_s)
        return self._before

    def after(self) -> dict[str, Any]:
        """Scrape again and return ``server_histograms`` (or why there are none)."""
        if self.url is None:
            return unavailable(self.reason)
        if self._before is None:
            return unavailable("the metrics were not scraped before the run", self.url)
        return server_histograms(self._before, scrape(self.url, self.timeout_s))

"""Diffing two scrapes into the run's server-side histograms, and scraping over HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelcaliper.targets.exposition import parse_exposition
from modelcaliper.targets.prometheus import (
    KINDS,
    MetricsScraper,
    Scrape,
    scrape,
    server_histograms,
)

BEFORE = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 100
:tensorflow:serving:request_count{model_name="m",status="INTERNAL"} 2
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="m",le="1000"} 50
:tensorflow:serving:request_latency_bucket{model_name="m",le="2000"} 90
:tensorflow:serving:request_latency_bucket{model_name="m",le="4000"} 100
:tensorflow:serving:request_latency_bucket{model_name="m",le="+Inf"} 100
:tensorflow:serving:request_latency_sum{model_name="m"} 120000
:tensorflow:serving:request_latency_count{model_name="m"} 100
# TYPE idle_seconds histogram
idle_seconds_bucket{le="1"} 3
idle_seconds_bucket{le="+Inf"} 3
idle_seconds_sum 1
idle_seconds_count 3
# TYPE in_flight gauge
in_flight 4
"""

# 40 more requests: 10 in (0, 1] ms, 10 in (1, 2] ms, 20 in (2, 4] ms; sum 100 ms.
AFTER = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 140
:tensorflow:serving:request_count{model_name="m",status="INTERNAL"} 2
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="m",le="1000"} 60
:tensorflow:serving:request_latency_bucket{model_name="m",le="2000"} 110
:tensorflow:serving:request_latency_bucket{model_name="m",le="4000"} 140
:tensorflow:serving:request_latency_bucket{model_name="m",le="+Inf"} 140
:tensorflow:serving:request_latency_sum{model_name="m"} 220000
:tensorflow:serving:request_latency_count{model_name="m"} 140
# TYPE idle_seconds histogram
idle_seconds_bucket{le="1"} 3
idle_seconds_bucket{le="+Inf"} 3
idle_seconds_sum 1
idle_seconds_count 3
# TYPE caliper_server_phase_seconds histogram
caliper_server_phase_seconds_bucket{phase="queue",le="0.001"} 30
caliper_server_phase_seconds_bucket{phase="queue",le="0.002"} 40
caliper_server_phase_seconds_bucket{phase="queue",le="+Inf"} 40
caliper_server_phase_seconds_sum{phase="queue"} 0.04
caliper_server_phase_seconds_count{phase="queue"} 40
# TYPE in_flight gauge
in_flight 0
"""


def _scrape(text: str, at_s: float = 0.0, url: str = "http://x/metrics") -> Scrape:
    return Scrape(url, at_s, parse_exposition(text))


def test_diff_turns_counters_into_deltas_and_histograms_into_estimates():
    result = server_histograms(_scrape(BEFORE, 10.0), _scrape(AFTER, 12.5))
    assert result["available"] is True and result["window_s"] == 2.5
    assert set(result["histograms"]) == set(KINDS)
    # Counter deltas; unchanged counters and gauges are left out.
    assert result["counters"] == {
        ':tensorflow:serving:request_count{model_name="m",status="OK"}': 40.0}
    [latency] = result["histograms"]["request_latency_ms"]
    assert latency["metric"] == ":tensorflow:serving:request_latency"
    assert latency["labels"] == {"model_name": "m"}
    assert latency["count"] == 40
    assert latency["mean"] == pytest.approx(2.5)  # 100 000 µs / 40, in ms
    # Delta buckets (1 ms: 10, 2 ms: 20, 4 ms: 40): p50 is rank 20, the end of (1, 2];
    # p90 is rank 36, 16/20 into (2, 4]; p99 rank 39.6, 19.6/20 into it.
    assert latency["p50"] == pytest.approx(2.0)
    assert latency["p90"] == pytest.approx(3.6)
    assert latency["p99"] == pytest.approx(3.96)
    assert latency["buckets"] == [[1.0, 10], [2.0, 20], [4.0, 40]]
    # A histogram first seen after the run started counts whole; seconds become ms.
    [queue] = result["histograms"]["phases_ms"]
    assert queue["labels"] == {"phase": "queue"} and queue["count"] == 40
    assert queue["mean"] == pytest.approx(1.0)
    assert queue["p50"] == pytest.approx(20 / 30)  # rank 20 of 30 in (0, 1] ms
    # A histogram that did not move is left out; nothing was reset.
    assert result["histograms"]["other"] == [] and result["resets"] == []


def test_diff_takes_a_restarted_series_from_after_alone():
    # The server restarted during the run: 7 requests since, all of them under 1 ms.
    restarted = BEFORE.replace('status="OK"} 100', 'status="OK"} 7')
    for old_count in ("50", "90", "100"):
        restarted = restarted.replace(f"}} {old_count}\n", "} 7\n")
    restarted = restarted.replace("_sum{model_name=\"m\"} 120000", "_sum{model_name=\"m\"} 3500")
    result = server_histograms(_scrape(BEFORE), _scrape(restarted))
    assert result["counters"][
        ':tensorflow:serving:request_count{model_name="m",status="OK"}'] == 7.0
    [latency] = result["histograms"]["request_latency_ms"]
    assert latency["reset"] is True and latency["count"] == 7
    assert latency["mean"] == pytest.approx(0.5)
    assert set(result["resets"]) == {
        ':tensorflow:serving:request_count{model_name="m",status="OK"}',
        ':tensorflow:serving:request_latency{model_name="m"}'}


UNIT_CASES = [
    # KServe's model servers: seconds, the predict step is the model's run time
    ("request_predict_seconds", "runtime_latency_ms", 1e3, None),
    # KServe's preprocess step is a phase named after the metric
    ("request_preprocess_seconds", "phases_ms", 1e3, "preprocess"),
    # MLServer's REST latency, seconds
    ("rest_server_requests_duration_seconds", "request_latency_ms", 1e3, None),
    # TF Serving's runtime latency, microseconds
    (":tensorflow:serving:runtime_latency", "runtime_latency_ms", 1e-3, None),
    # TF Serving's batch sizes, rows
    (":tensorflow:serving:batching_session:input_batch_size", "batch_size_rows", 1.0, None),
    # an unknown histogram whose name says microseconds
    ("my_decode_us", "other", 1e-3, None),
]


@pytest.mark.parametrize(("name", "kind", "factor", "phase"), UNIT_CASES)
def test_known_series_are_classified_and_normalised(name, kind, factor, phase):
    after = (f'# TYPE {name} histogram\n{name}_bucket{{le="2"}} 1\n'
             f'{name}_bucket{{le="+Inf"}} 1\n{name}_sum 2\n{name}_count 1\n')
    result = server_histograms(_scrape(""), _scrape(after))
    [entry] = result["histograms"][kind]
    assert entry["mean"] == pytest.approx(2 * factor)
    assert entry["buckets"] == [[pytest.approx(2 * factor), 1]]
    assert entry["labels"].get("phase") == phase
    assert "unit" not in entry


def test_a_histogram_of_unknown_unit_says_so():
    after = 'h_bucket{le="5"} 2\nh_bucket{le="+Inf"} 2\nh_sum 6\nh_count 2\n'
    [entry] = server_histograms(_scrape(""), _scrape(after))["histograms"]["other"]
    assert entry["unit"] is None and entry["mean"] == 3.0


def test_triton_means_come_from_its_counters():
    text = """\
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} OK
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="m",version="1"} TOTAL
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="m",version="1"} QUEUE
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} ROWS
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} EXECS
"""

    def counters(**values: int) -> str:
        out = text
        for key, value in values.items():
            out = out.replace(f"}} {key.upper()}\n", f"}} {value}\n")
        return out

    before = counters(ok=10, total=5000, queue=1000, rows=250, execs=10)
    after = counters(ok=30, total=45000, queue=3000, rows=1250, execs=20)
    kinds = server_histograms(_scrape(before), _scrape(after))["histograms"]
    [request] = kinds["request_latency_ms"]
    assert request["mean"] == pytest.approx(2.0)  # 40 000 µs over 20 requests
    assert request["count"] == 20 and request["source"] == "counters"
    assert request["p99"] is None
    assert kinds["queue_latency_ms"][0]["mean"] == pytest.approx(0.1)
    assert kinds["batch_size_rows"][0]["mean"] == pytest.approx(100.0)  # 1000 rows / 10 runs


def test_a_failed_scrape_makes_the_result_unavailable_with_the_reason():
    failed = Scrape("http://x/metrics", 0.0, error="cannot reach http://x/metrics: refused")
    result = server_histograms(_scrape(BEFORE), failed)
    assert result == {"available": False, "url": "http://x/metrics",
                      "reason": "cannot reach http://x/metrics: refused"}


# ---------------------------------------------------------------------- over HTTP

ROUTES: dict[str, tuple[int, str, bytes]] = {
    "/metrics": (200, "text/plain; version=0.0.4", AFTER.encode()),
    "/html": (200, "text/html", b"<html><body>metrics</body></html>"),
    "/garbage": (200, "text/plain", b"this is {not metrics\n"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        status, kind, body = ROUTES.get(self.path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scrape_parses_a_metrics_page(http_base):
    result = scrape(f"{http_base}/metrics")
    assert result.error is None and result.exposition is not None
    assert result.exposition.types["in_flight"] == "gauge"


@pytest.mark.parametrize(("path", "reason"), [
    ("/missing", "answered HTTP 404"),  # no metrics there
    ("/html", "answered HTML"),  # a web page, not metrics
    ("/garbage", "did not answer in the Prometheus text format"),  # something else
])
def test_scrape_says_why_a_page_is_not_metrics(http_base, path, reason):
    result = scrape(f"{http_base}{path}")
    assert result.exposition is None and reason in result.error


def test_scrape_of_an_unreachable_port_is_not_an_error():
    url = f"http://127.0.0.1:{_closed_port()}/metrics"
    result = scrape(url, timeout_s=1.0)
    assert result.exposition is None and result.error.startswith(f"cannot reach {url}")


def test_scraper_before_and_after(http_base):
    scraper = MetricsScraper(f"{http_base}/metrics")
    assert scraper.before() is not None
    result = scraper.after()
    assert result["available"] is True and result["counters"] == {}
    # Without a URL, or without the first scrape, the result says why.
    assert MetricsScraper(None, reason="no metrics here").after() == {
        "available": False, "url": None, "reason": "no metrics here"}
    assert MetricsScraper(f"{http_base}/metrics").after()["reason"] == (
        "the metrics were not scraped before the run")

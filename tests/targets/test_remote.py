"""``ExistingServer`` and the detection of a server's Prometheus metrics URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelcaliper.errors import TargetError
from modelcaliper.targets import remote
from modelcaliper.targets.affinity import CpuPlan
from modelcaliper.targets.embedded import EmbeddedServer
from modelcaliper.targets.remote import ExistingServer, detect_metrics_url, metrics_candidates
from tests.targets.helpers import free_port

CANDIDATES = [
    # REST: ours/KServe/MLServer, TF Serving, then Triton's and MLServer's metrics ports
    ("http://10.0.0.5:8501", "tfserving-rest",
     ["http://10.0.0.5:8501/metrics", "http://10.0.0.5:8501/monitoring/prometheus/metrics",
      "http://10.0.0.5:8002/metrics", "http://10.0.0.5:8082/metrics"]),
    # a REST address without scheme, with a trailing slash
    ("127.0.0.1:8000/", "v2-rest",
     ["http://127.0.0.1:8000/metrics", "http://127.0.0.1:8000/monitoring/prometheus/metrics",
      "http://127.0.0.1:8002/metrics", "http://127.0.0.1:8082/metrics"]),
    # gRPC: the REST port guessed as the next one (TF Serving 8500 → 8501)
    ("127.0.0.1:8500", "tfserving-grpc",
     ["http://127.0.0.1:8501/monitoring/prometheus/metrics", "http://127.0.0.1:8501/metrics",
      "http://127.0.0.1:8002/metrics", "http://127.0.0.1:8082/metrics"]),
    # gRPC on Triton's port: its metrics port is the next one, listed once
    ("grpc://triton:8001", "v2-grpc",
     ["http://triton:8002/monitoring/prometheus/metrics", "http://triton:8002/metrics",
      "http://triton:8082/metrics"]),
]


@pytest.mark.parametrize(("url", "protocol", "expected"), CANDIDATES)
def test_metrics_candidates(url, protocol, expected):
    assert metrics_candidates(url, protocol) == expected


METRICS = b"# TYPE up gauge\nup 1\n"


def serve_paths(paths: set[str]) -> tuple[ThreadingHTTPServer, str]:
    """A server answering metrics on ``paths`` and 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            found = self.path in paths
            body = METRICS if found else b"not found"
            self.send_response(200 if found else 404)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def closed_well_known_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton's and MLServer's metrics ports moved to ports nothing listens on."""
    monkeypatch.setattr(remote, "TRITON_METRICS_PORT", free_port())
    monkeypatch.setattr(remote, "MLSERVER_METRICS_PORT", free_port())


@pytest.fixture()
def tf_serving_like() -> Iterator[str]:
    server, base = serve_paths({"/monitoring/prometheus/metrics"})
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture()
def no_metrics() -> Iterator[str]:
    server, base = serve_paths(set())
    yield base
    server.shutdown()
    server.server_close()


def test_detects_tf_servings_path(tf_serving_like, closed_well_known_ports):
    found = detect_metrics_url(tf_serving_like, "tfserving-rest")
    assert found.url == f"{tf_serving_like}/monitoring/prometheus/metrics"
    assert found.tried == (f"{tf_serving_like}/metrics", found.url)


def test_no_metrics_anywhere_says_where_it_looked(no_metrics, closed_well_known_ports):
    found = detect_metrics_url(no_metrics, "v2-rest")
    assert found.url is None and len(found.tried) == 4
    assert found.reason.startswith(f"no Prometheus metrics at {no_metrics}/metrics, ")
    assert found.reason.endswith("(pass --metrics-url)")


def test_a_given_metrics_url_is_used_as_is():
    found = detect_metrics_url("http://x:1", "v2-rest", metrics_url="http://y:2/m")
    assert (found.url, found.tried) == ("http://y:2/m", ("http://y:2/m",))


@pytest.mark.slow
def test_existing_server_reports_signature_and_metrics(model):
    with EmbeddedServer(model, protocol="v2-grpc", cpus=CpuPlan()) as embedded:
        for protocol, url in (("v2-rest", embedded.http_url), ("v2-grpc", embedded.grpc_url)):
            with ExistingServer(url, protocol, "mlp",
                                metrics_url=None if protocol == "v2-rest" else "given") as ep:
                assert [t.name for t in ep.signature.inputs] == ["features"]
                assert ep.pid is None and ep.pinning is None
                assert ep.metrics_url == (f"{embedded.http_url}/metrics"
                                          if protocol == "v2-rest" else "given")
                assert (ep.http_url, ep.grpc_url) == ((url, None) if protocol == "v2-rest"
                                                      else (None, url))


def test_existing_server_that_is_not_there():
    with pytest.raises(TargetError, match="cannot reach"):
        ExistingServer(f"http://127.0.0.1:{free_port()}", "v2-rest", "m").open()

"""A server someone else runs (``ExistingServer``), and where its metrics probably are.

``detect_metrics_url`` tries the places the common servers expose Prometheus metrics, in
order, and keeps the first that answers in the Prometheus text format:

- ``<REST>/metrics``: caliper serve-model, KServe model servers, MLServer (REST port);
- ``<REST>/monitoring/prometheus/metrics``: TF Serving (with a monitoring config);
- ``http://<host>:8002/metrics``: Triton;
- ``http://<host>:8082/metrics``: MLServer's default metrics port.

For a gRPC address ``host:port`` the REST port is guessed as ``port + 1`` (TF Serving's 8500
and 8501, Triton's 8001 and 8002). A given ``--metrics-url`` is used as it is.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from modelcaliper.targets.base import Endpoint, TargetBase

__all__ = ["ExistingServer", "MetricsLocation", "detect_metrics_url", "metrics_candidates"]

TRITON_METRICS_PORT = 8002
MLSERVER_METRICS_PORT = 8082


@dataclass(frozen=True)
class MetricsLocation:
    """The metrics URL found (or None), why, and every URL tried."""

    url: str | None
    reason: str
    tried: tuple[str, ...] = ()


def _host(hostname: str) -> str:
    return f"[{hostname}]" if ":" in hostname else hostname


def metrics_candidates(url: str, protocol: str) -> list[str]:
    """The URLs where a server at ``url`` speaking ``protocol`` may expose its metrics."""
    from modelcaliper.load.grpc import parse_grpc_target
    from modelcaliper.load.health import http_base

    if protocol.endswith("-grpc"):
        target = parse_grpc_target(url)
        hostname, _, port = target.rpartition(":")
        host = hostname.strip("[]")
        rest = f"http://{_host(host)}:{int(port) + 1}"
        found = [f"{rest}/monitoring/prometheus/metrics", f"{rest}/metrics"]
    else:
        base = http_base(url)
        host = urllib.parse.urlsplit(base).hostname or "127.0.0.1"
        found = [f"{base}/metrics", f"{base}/monitoring/prometheus/metrics"]
    found += [f"http://{_host(host)}:{TRITON_METRICS_PORT}/metrics",
              f"http://{_host(host)}:{MLSERVER_METRICS_PORT}/metrics"]
    return list(dict.fromkeys(found))


def detect_metrics_url(url: str, protocol: str, *, metrics_url: str | None = None,
                       timeout_s: float = 1.0) -> MetricsLocation:
    """The first candidate answering Prometheus metrics; never raises for a missing one."""
    from modelcaliper.targets.prometheus import scrape

    if metrics_url:
        return MetricsLocation(metrics_url, "given with --metrics-url", (metrics_url,))
    tried: list[str] = []
    for candidate in metrics_candidates(url, protocol):
        tried.append(candidate)
        if scrape(candidate, timeout_s).exposition is not None:
            return MetricsLocation(candidate, "detected", tuple(tried))
    return MetricsLocation(None, "no Prometheus metrics at " + ", ".join(tried) +
                           " (pass --metrics-url)", tuple(tried))


@dataclass(frozen=True)
class ExistingServer(TargetBase):
    """A server someone else runs, at ``url``, speaking ``protocol``."""

    url: str
    protocol: str
    model: str
    metrics_url: str | None = None
    detect_metrics: bool = True

    def open(self) -> Endpoint:
        """Ask the server for the model's metadata: proves it is up and yields the signature."""
        from modelcaliper.load.health import probe_target

        signature = probe_target(self.url, self.protocol, self.model)
        metrics_url = self.metrics_url
        if metrics_url is None and self.detect_metrics:
            metrics_url = detect_metrics_url(self.url, self.protocol).url
        grpc = self.protocol.endswith("-grpc")
        return Endpoint(self.url, self.protocol, self.model, signature,
                        http_url=None if grpc else self.url, grpc_url=self.url if grpc else None,
                        metrics_url=metrics_url)

    def close(self) -> None:
        """Nothing to release: the server is not ours."""

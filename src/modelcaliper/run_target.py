"""The target's side of a run: built from the spec, watched while loaded, checked after.

``make_target`` picks the ``Target`` a ``RunSpec`` names (embedded, existing or launched).
``Monitor`` is the load engine's live hook: it feeds the progress display and, for a
server we started, checks its process every batch, so a crash stops the run at once.
``down_reason`` says after the run whether the target survived it. ``series_values`` and
``server_view`` turn Prometheus scrapes into what the run folder and the summary keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelcaliper.config import RunSpec
from modelcaliper.errors import TargetError

__all__ = ["Monitor", "down_reason", "make_target", "series_values", "server_view"]


def make_target(spec: RunSpec, log_dir: Path | None) -> Any:
    """The ``Target`` the spec names: embedded, existing or launched."""
    from modelcaliper.targets import EmbeddedServer, ExistingServer, LaunchedServer

    if spec.target_kind == "embedded":
        assert spec.model_path is not None
        return EmbeddedServer(spec.model_path, protocol=spec.protocol, model_name=spec.model_name,
                              version=spec.model_version, server_args=spec.server_args,
                              cpus=spec.cpus, log_dir=log_dir,
                              start_timeout_s=spec.ready_timeout_s)
    if spec.target_kind == "launched":
        assert spec.launch is not None and spec.ready_url is not None
        return LaunchedServer(spec.launch, spec.ready_url, protocol=spec.protocol,
                              model=str(spec.model_name), url=spec.target_url,
                              timeout_s=spec.ready_timeout_s, log_dir=log_dir, cpus=spec.cpus,
                              metrics_url=spec.metrics_url)
    assert spec.target_url is not None
    return ExistingServer(spec.target_url, spec.protocol, str(spec.model_name),
                          metrics_url=spec.metrics_url, detect_metrics=spec.scrape_metrics)


class Monitor:
    """The live hook: feeds the display and stops the run if our server's process died.

    A sink whose ``update`` returns True ends the load early (``stopped_early``): the run
    still completes, measured up to that point (a sweep's early stopping).
    """

    def __init__(self, target: Any, sink: Any) -> None:
        self.target = target
        self.sink = sink
        self.crash_code: int | None = None
        self.stopped_early = False

    def __call__(self, batch: Any) -> bool:
        """Show the batch; True (stop the run) when our server ended or the sink says enough."""
        enough = bool(self.sink.update(batch)) if self.sink is not None else False
        exit_code = getattr(self.target, "exit_code", None)
        code = exit_code() if exit_code is not None else None
        if code is not None:
            self.crash_code = code
            return True
        self.stopped_early = self.stopped_early or enough
        return enough


def series_values(exposition: Any) -> dict[str, float] | None:
    """A scrape as ``{'name{label="v"}': value}`` (what server_metrics.json keeps)."""
    if exposition is None:
        return None
    out = {}
    for (name, labels), value in exposition.values().items():
        inner = ",".join(f'{k}="{v}"' for k, v in labels)
        out[f"{name}{{{inner}}}" if inner else name] = value
    return out


def server_view(histograms: Mapping[str, Any]) -> dict[str, Any]:
    """The server's share of the run for the summary: histogram estimates without buckets."""
    if not histograms.get("available"):
        return dict(histograms)
    kinds = {kind: [{k: v for k, v in entry.items() if k != "buckets"} for entry in entries]
             for kind, entries in histograms["histograms"].items() if entries}
    return {"available": True, "url": histograms["url"], "window_s": histograms["window_s"],
            "histograms": kinds, "resets": histograms.get("resets", [])}


def down_reason(target: Any, endpoint: Any, monitor: Monitor) -> str | None:
    """Why the target is down after the run (None when it still answers)."""
    from modelcaliper.load.health import probe_target
    from modelcaliper.targets.launched import describe_exit

    code = monitor.crash_code
    exit_code = getattr(target, "exit_code", None)
    if code is None and exit_code is not None:
        code = exit_code()
    if code is not None:
        tail = target.logs_tail(1)
        last = f"; last log line: {tail[-1].strip()}" if tail else ""
        return f"the server process {describe_exit(code)} during the run{last}"
    if exit_code is None:
        try:
            probe_target(endpoint.url, endpoint.protocol, endpoint.model)
        except TargetError as exc:
            return f"the target stopped answering during the run: {exc}"
    return None

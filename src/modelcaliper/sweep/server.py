"""The server of one sweep configuration: the embedded server (ours, restartable) or yours.

``SweepServer`` starts the embedded server for one server configuration — on free ports of
127.0.0.1, or inside the rate-limited namespace on its own address with ``--link`` — and
knows where each protocol's requests go, the model's name and signature, the server's
process id (for its CPU time) and, when it has died, why. For ``--target`` it only finds the
target's metrics URL once; it never starts or stops anything then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelcaliper.sweep.plan import ServerConfig

__all__ = ["SweepServer"]


class SweepServer:
    """The server of one configuration: ours (embedded, restartable) or the ``--target``."""

    def __init__(self, settings: Any, config: ServerConfig, log_dir: Path, link: Any) -> None:
        self.settings, self.config, self.log_dir, self.link = settings, config, log_dir, link
        self.target: Any = None
        self.endpoint: Any = None
        self.signatures: dict[str, Any] = {}
        self.starts = 0
        self.metrics_url: str | None = None
        self.start_failure: str | None = None
        """Why the server could not start: its configuration's other points fail at once."""

    @property
    def ours(self) -> bool:
        """Whether the sweep started this server (and may restart it)."""
        return self.settings.target_url is None

    @property
    def pid(self) -> int | None:
        """The server's process id, when it is ours."""
        return self.endpoint.pid if self.endpoint is not None and self.ours else None

    def start(self) -> Any:
        """Start (or reach) the server; its endpoint."""
        from modelcaliper.targets import EmbeddedServer

        s = self.settings
        self.starts += 1
        if not self.ours:
            from modelcaliper.targets.remote import detect_metrics_url

            assert s.target_url is not None
            first = s.axes.wires[0].protocol
            self.metrics_url = None if getattr(s.run_args, "no_metrics", False) else \
                detect_metrics_url(s.target_url, first,
                                   metrics_url=getattr(s.run_args, "metrics_url", None)).url
            self.endpoint = None
            return None
        assert s.model_path is not None
        options: dict[str, Any] = {}
        if self.link is not None:
            options = {"host": self.link.addresses.server_address,
                       "wrapper": self.link.wrapper}
        self.target = EmbeddedServer(
            s.model_path, protocol=s.axes.wires[0].protocol, model_name=s.model_name,
            version=s.model_version, server_args=[*s.server_args, *self.config.flags()],
            cpus=s.cpus, log_dir=self.log_dir, start_timeout_s=s.ready_timeout_s, **options)
        self.endpoint = self.target.open()
        self.metrics_url = self.endpoint.metrics_url
        self.signatures = {self.endpoint.protocol: self.endpoint.signature}
        return self.endpoint

    def url(self, protocol: str) -> str:
        """Where a protocol's requests go."""
        if not self.ours:
            assert self.settings.target_url is not None
            return self.settings.target_url
        return self.endpoint.grpc_url if protocol.endswith("-grpc") else self.endpoint.http_url

    @property
    def model(self) -> str:
        """The served model's name."""
        if self.endpoint is not None:
            return str(self.endpoint.model)
        return str(self.settings.model_name)

    def signature(self, protocol: str) -> Any:
        """The model's signature, asked over ``protocol`` once."""
        from modelcaliper.load.health import probe_target

        if protocol not in self.signatures:
            self.signatures[protocol] = probe_target(self.url(protocol), protocol, self.model)
        return self.signatures[protocol]

    def death(self) -> str | None:
        """Why our server is gone (None while it runs, or when it is not ours)."""
        from modelcaliper.targets.launched import describe_exit

        if self.target is None:
            return None
        code = self.target.exit_code()
        if code is None:
            return None
        tail = self.target.logs_tail(1)
        last = f"; last log line: {tail[-1].strip()[:200]}" if tail else ""
        return f"the server process {describe_exit(code)}{last}"

    def close(self) -> None:
        """Stop our server (nothing for a server that is not ours)."""
        if self.target is not None:
            self.target.close()
            self.target = None

"""The embedded target: ``caliper serve-model`` started for the run, on free local ports.

``EmbeddedServer(model_path, protocol=...)`` runs ``sys.executable -m modelcaliper.cli.main
serve-model MODEL --host 127.0.0.1 --http-port 0 --grpc-port 0 --ready-file F`` as a separate
process (a ``ServerProcess``: its own process group, output in ``server.log`` in the run
folder or a temporary directory, SIGTERM if we die). It waits for the ready file, which the
server writes once both ports are bound and the model is warm, then asks the server for the
model's metadata over the chosen protocol and returns the ``Endpoint``: the HTTP URL for the
REST protocols, ``127.0.0.1:port`` for gRPC, ``/metrics`` for the scraper.

``host`` (default 127.0.0.1) and ``wrapper`` (a command the server runs under) let a sweep
run it inside a rate-limited network namespace, bound to that namespace's own address
(``sweep.link``).

Start-up failures raise ``TargetStartError`` (exit 2) before any load. A path that does not
hold a model is caught here without starting anything (the server's own ``DataError``); a
model that cannot be loaded makes the server exit 2 with one line, ``error: DataError:
...``, which becomes the message. ``close()`` stops the server (SIGTERM, the grace period,
SIGKILL) and is safe to call at any time; ``atexit`` calls it too.

CPU pinning (``affinity``): by default the server runs on the last half of the CPUs and this
process — the load generator, and the worker processes it starts later — on the rest, when
there are at least two. ``close()`` gives this process its previous CPUs back. What was
applied is in ``Endpoint.pinning``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.targets.affinity import CpuPlan, pin_current_process, plan_cpus
from modelcaliper.targets.base import Endpoint, TargetBase
from modelcaliper.targets.launched import ServerProcess

__all__ = ["EmbeddedServer"]

# Flags the target sets itself; passing them in ``server_args`` would break the hand-over.
_RESERVED_FLAGS = ("--host", "--http-port", "--grpc-port", "--ready-file", "--model-name",
                   "--version")
_STOP_MARGIN_S = 5.0  # beyond the server's own drain, before SIGKILL


class EmbeddedServer(TargetBase):
    """``caliper serve-model`` for one model, started on free ports and stopped for sure."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        protocol: str,
        model_name: str | None = None,
        version: str | int | None = None,
        server_args: Sequence[str] = (),
        cpus: CpuPlan | None = None,
        log_dir: str | Path | None = None,
        start_timeout_s: float = 120.0,
        grace_period_s: float = 10.0,
        host: str = "127.0.0.1",
        wrapper: Sequence[str] = (),
    ) -> None:
        from modelcaliper.load.health import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        for arg in server_args:
            flag = str(arg).split("=", 1)[0]
            if flag in _RESERVED_FLAGS:
                raise UsageError(f"server argument {flag} is set by the embedded target itself "
                                 "(model name and version have their own options)")
        if not start_timeout_s > 0:
            raise UsageError(f"the start-up timeout must be > 0 s, got {start_timeout_s}")
        self.model_path = Path(model_path)
        self.protocol = protocol
        self.model_name = model_name
        self.version = None if version is None else str(version)
        self.server_args = [str(a) for a in server_args]
        self.cpus = cpus
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.start_timeout_s = start_timeout_s
        self.grace_period_s = grace_period_s
        self.host = host
        """Address the server binds and is reached at (a namespace's own address for a link)."""
        self.wrapper = [str(a) for a in wrapper]
        """Command the server runs under, e.g. ``ip netns exec NS`` (empty: none)."""
        self.process: ServerProcess | None = None
        self._client_cpus_before: tuple[int, ...] | None = None

    def command(self, ready_file: Path) -> list[str]:
        """The ``serve-model`` command line this target runs."""
        argv = [*self.wrapper, sys.executable, "-m", "modelcaliper.cli.main", "serve-model",
                str(self.model_path), "--host", self.host, "--http-port", "0",
                "--grpc-port", "0", "--ready-file", str(ready_file),
                "--grace-period-s", f"{self.grace_period_s:g}"]
        if self.model_name:
            argv += ["--model-name", self.model_name]
        if self.version is not None:
            argv += ["--version", self.version]
        return argv + self.server_args

    def open(self) -> Endpoint:
        """Start the server, wait until it is ready, and return its endpoint."""
        from modelcaliper.load.health import probe_target
        from modelcaliper.server.runtimes import resolve_artifact

        resolve_artifact(self.model_path, self.version)  # DataError before starting anything
        plan = self.cpus if self.cpus is not None else plan_cpus()
        self.process = ServerProcess(
            log_dir=self.log_dir, cpus=plan.server_cpus, name="the embedded server",
            grace_period_s=self.grace_period_s + _STOP_MARGIN_S)
        try:
            ready_file = self.process.workdir / "ready.json"
            self.process.start(self.command(ready_file))
            self.process.wait_ready(lambda _timeout_s: ready_file.exists(),
                                    timeout_s=self.start_timeout_s,
                                    waiting_for="waiting for its ready file")
            facts = json.loads(ready_file.read_text())
            http_url = f"http://{self.host}:{int(facts['http_port'])}"
            grpc_url = f"{self.host}:{int(facts['grpc_port'])}"
            model = str(facts["model_name"])
            url = grpc_url if self.protocol.endswith("-grpc") else http_url
            try:
                signature = probe_target(url, self.protocol, model)
            except TargetError as exc:
                raise self.process.failure(f"the embedded server is ready but does not answer "
                                           f"{self.protocol}: {exc}") from None
            if plan.client_cpus:
                self._client_cpus_before = pin_current_process(plan.client_cpus)
        except BaseException:
            self.close()
            raise
        return Endpoint(url, self.protocol, model, signature, http_url=http_url,
                        grpc_url=grpc_url, metrics_url=f"{http_url}/metrics",
                        pid=self.process.pid, pinning=plan.to_dict())

    def close(self) -> None:
        """Stop the server (SIGTERM, grace period, SIGKILL) and unpin this process."""
        try:
            if self.process is not None:
                self.process.stop()
        finally:
            if self._client_cpus_before:
                pin_current_process(self._client_cpus_before)
                self._client_cpus_before = None

    def logs_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the server's log (JSON events, one per line)."""
        return self.process.logs_tail(n) if self.process is not None else []

    def exit_code(self) -> int | None:
        """The server's exit code if it has ended (a crash mid-run), else None."""
        return self.process.exit_code() if self.process is not None else None

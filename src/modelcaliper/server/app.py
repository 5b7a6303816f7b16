"""The embedded server process: one model, HTTP and gRPC on one event loop (``serve-model``).

Start-up is strictly ordered so that "ready" means ready:

1. load the model with its runtime (a corrupt or unsupported artifact is a ``DataError``,
   which the CLI prints as one line and exits 2);
2. run ``warmup_requests`` synthetic predictions, so the first real request does not pay for
   lazy initialisation;
3. bind the HTTP and gRPC ports (a busy port is a ``UsageError`` naming it, exit 2);
4. mark the service ready and write the ready file atomically (a temporary file renamed over
   it): ``{"http_port", "grpc_port", "pid", "model_name"}``, with the real ports when 0 asked
   for free ones. The ready file is removed again on a clean stop.

Both servers share one uvloop event loop: uvicorn (httptools) runs the ASGI app of
``modelcaliper.server.http`` and ``grpc.aio`` runs the gRPC services of
``modelcaliper.server.grpc_server``. SIGTERM or SIGINT stops accepting new connections and
calls, lets the requests in flight finish (for at most ``grace_period_s``) and returns 0.
The process logs one JSON object per line on stderr (``modelcaliper.server.logging``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from modelcaliper.errors import UsageError
from modelcaliper.server.batching import BatchingParameters
from modelcaliper.server.logging import EventLog, capture_library_logs, native_stderr_as_events
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.runtimes.base import GRAPH_OPTIMIZATIONS, Runtime, import_optional
from modelcaliper.server.service import EXECUTIONS, ModelService, ServiceOptions

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServerConfig", "default_model_name", "serve"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body (HTTP) or message (gRPC) the server accepts unless told otherwise."""

MAX_HEADER_BYTES = 64 * 1024
"""Largest request line plus headers; httptools itself would buffer them without limit."""

_TENSORFLOW_PLATFORM = "tensorflow_savedmodel"


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``serve`` needs; ports of 0 pick free ones, other 0s mean "unbounded"."""

    model_path: Path
    model_name: str | None = None
    """Name clients address the model by; default: the artifact's name (see
    ``default_model_name``)."""
    version: str | None = None
    signature_name: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8501
    grpc_port: int = 8500
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: str = "all"
    model_threads: int = 1
    execution: str = "auto"
    batching: BatchingParameters | None = None
    max_queued_requests: int = 64
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    warmup_requests: int = 8
    ready_file: Path | None = None
    profiler_port: int | None = None
    split_timing: bool = True
    grace_period_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", Path(self.model_path))
        if self.ready_file is not None:
            object.__setattr__(self, "ready_file", Path(self.ready_file))
        for name in ("http_port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise UsageError(f"{name} must be between 0 and 65535, got {getattr(self, name)}")
        if self.profiler_port is not None and not 1 <= self.profiler_port <= 65535:
            raise UsageError(f"profiler_port must be between 1 and 65535, got {self.profiler_port}")
        if self.model_threads < 1:
            raise UsageError(f"model_threads must be >= 1, got {self.model_threads}")
        if self.execution not in EXECUTIONS:
            raise UsageError(f"--execution must be one of {', '.join(EXECUTIONS)}, "
                             f"got '{self.execution}'")
        if self.max_queued_requests < 0:
            raise UsageError(
                f"max_queued_requests must be >= 0 (0 = unbounded), got {self.max_queued_requests}")
        if self.max_body_bytes < 1:
            raise UsageError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.warmup_requests < 0:
            raise UsageError(f"warmup_requests must be >= 0, got {self.warmup_requests}")
        if self.grace_period_s < 0:
            raise UsageError(f"grace_period_s must be >= 0, got {self.grace_period_s}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise UsageError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)},"
                             f" got '{self.graph_optimization}'")
        if self.model_name is not None and not self.model_name.strip():
            raise UsageError("model_name must not be empty")


def default_model_name(path: str | Path) -> str:
    """The name a model is served under when none is given: its file or directory name.

    ``mlp.onnx`` → ``mlp``; ``ranker/`` (a SavedModel, or a base path of versions) →
    ``ranker``; ``ranker/3/`` or ``ranker/3/model.onnx`` (one version of a base path) →
    ``ranker``.
    """
    resolved = Path(path).resolve()
    if resolved.is_file() or resolved.suffix.lower() == ".onnx":
        if resolved.name in ("model.onnx", "saved_model.pb", "saved_model.pbtxt"):
            resolved = resolved.parent
        else:
            return resolved.stem
    if resolved.name.isdigit() and resolved.parent.name:
        resolved = resolved.parent
    return resolved.name or "model"


class _Stopped(BaseException):
    """SIGTERM or SIGINT arrived while the model was still loading or warming up."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """During the synchronous start-up, turn SIGTERM/SIGINT into ``_Stopped``."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(config: ServerConfig, *, log: EventLog | None = None) -> int:
    """Load the model, serve it on HTTP and gRPC until SIGTERM/SIGINT, drain, return 0."""
    log = log or EventLog()
    capture_library_logs(log, ("uvicorn", "grpc"))
    uvloop = import_optional("uvloop", "server", "the embedded model server")
    import_optional("uvicorn", "server", "the embedded model server")
    import_optional("httptools", "server", "the embedded model server")
    if config.ready_file is not None:  # fail before a long model load, not after it
        try:
            config.ready_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the ready file's directory "
                             f"{config.ready_file.parent}: {exc.strerror}") from None
    try:
        with _stop_on_signals():
            service = _load(config, log)
    except _Stopped as stop:
        log.info("stop", signal=str(stop), phase="start-up")
        return 0
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve_async(config, service, log))
    finally:
        service.close()
    return 0


def _load(config: ServerConfig, log: EventLog) -> ModelService:
    from modelcaliper.server.runtimes import open_runtime

    start_s = time.perf_counter()
    with native_stderr_as_events(log):
        runtime = open_runtime(
            config.model_path,
            version=config.version,
            signature_name=config.signature_name,
            intra_op_threads=config.intra_op_threads,
            inter_op_threads=config.inter_op_threads,
            graph_optimization=config.graph_optimization,
        )
    name = config.model_name or default_model_name(config.model_path)
    load_s = time.perf_counter() - start_s
    log.info("start", model_name=name, version=runtime.version, platform=runtime.platform,
             model_path=str(config.model_path), load_s=round(load_s, 3), pid=os.getpid())
    if config.profiler_port is not None:
        _start_profiler(runtime, config.profiler_port, log)
    options = ServiceOptions(
        model_threads=config.model_threads,
        execution=config.execution,
        max_queued_requests=config.max_queued_requests,
        batching=config.batching,
        split_timing=config.split_timing,
    )
    service = ModelService(runtime, model_name=name, version=runtime.version, options=options)
    start_s = time.perf_counter()
    with native_stderr_as_events(log):
        service.warm_up(config.warmup_requests)
    service.ready = False  # ready only once both ports are bound
    log.info("warmed_up", requests=config.warmup_requests,
             warmup_s=round(time.perf_counter() - start_s, 3))
    return service


def _start_profiler(runtime: Runtime, port: int, log: EventLog) -> None:
    if runtime.platform != _TENSORFLOW_PLATFORM:
        raise UsageError(f"--profiler-port needs a TensorFlow SavedModel; this model runs on "
                         f"{runtime.platform}, which has no profiler server")
    import tensorflow as tf

    tf.profiler.experimental.server.start(port)
    log.info("profiler", port=port, listens_on="all interfaces")


def _bind(host: str, port: int, label: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; a busy port is a one-line ``UsageError``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve --host '{host}': {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        busy = exc.errno == errno.EADDRINUSE
        reason = "is already in use" if busy else f"cannot be bound ({exc.strerror})"
        raise UsageError(f"{label} port {port} on {host} {reason}; pick another with "
                         f"--{label.lower()}-port (0 picks a free one)") from None
    sock.setblocking(False)
    return sock


def _build_grpc(service: ModelService, metrics: Metrics, config: ServerConfig,
                log: EventLog) -> tuple[Any, int | None]:
    """The gRPC server (not yet started) and its port, or ``(None, None)`` if not installed."""
    try:
        from modelcaliper.server.grpc_server import build_grpc_server
    except ModuleNotFoundError as exc:
        if exc.name != "modelcaliper.server.grpc_server":
            raise
        log.warning("grpc_unavailable", reason="modelcaliper.server.grpc_server is missing")
        return None, None
    try:
        return build_grpc_server(service, metrics, host=config.host, port=config.grpc_port,
                                 max_message_bytes=config.max_body_bytes)
    except (RuntimeError, OSError) as exc:
        raise UsageError(f"gRPC port {config.grpc_port} on {config.host} cannot be bound "
                         f"({exc}); pick another with --grpc-port (0 picks a free one)") from None


def _write_ready_file(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as JSON to ``path`` atomically: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(orjson.dumps(document) + b"\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise UsageError(f"cannot write the ready file {path}: {exc.strerror}") from None


async def _serve_async(config: ServerConfig, service: ModelService, log: EventLog) -> None:
    import uvicorn

    from modelcaliper.server.http import HttpFrontEnd

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    servers: list[Any] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        if stop.is_set():  # a second signal: stop waiting for the requests in flight
            for running in servers:
                running.force_exit = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    metrics = Metrics()
    http_sock = _bind(config.host, config.http_port, "HTTP")
    try:
        grpc_server, grpc_port = _build_grpc(service, metrics, config, log)
    except BaseException:
        http_sock.close()
        raise
    http_port = http_sock.getsockname()[1]
    app = HttpFrontEnd(service, metrics, max_body_bytes=config.max_body_bytes, log=log)
    uv_config = uvicorn.Config(
        app, http=_bounded_httptools_protocol(MAX_HEADER_BYTES), ws="none", lifespan="off",
        interface="asgi3",
        log_config=None, log_level="warning", access_log=False, server_header=False,
        timeout_keep_alive=30, limit_concurrency=4096, backlog=2048,
        timeout_graceful_shutdown=math.ceil(config.grace_period_s),
    )
    server = _uvicorn_server(uv_config)
    servers.append(server)
    http_task = asyncio.create_task(server.serve(sockets=[http_sock]))
    failed = True
    try:
        if grpc_server is not None:
            await grpc_server.start()
        while not server.started:
            if http_task.done():  # uvicorn failed to start; surface its exception
                await http_task
                raise UsageError(f"the HTTP server on port {http_port} stopped during start-up")
            await asyncio.sleep(0.005)
        service.ready = True
        document = {"http_port": http_port, "grpc_port": grpc_port, "pid": os.getpid(),
                    "model_name": service.model_name}
        if config.ready_file is not None:
            _write_ready_file(config.ready_file, document)
        log.info("ready", host=config.host, **document)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, http_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        log.info("stop", signal=received[0] if received else None, in_flight=service.in_flight)
        failed = False
    finally:
        # Stop accepting, let what is in flight finish (unless start-up failed), then close.
        service.ready = False
        server.should_exit = True
        if failed:
            server.force_exit = True
        drains = [http_task]
        if grpc_server is not None:
            grace_s = 0.0 if failed else config.grace_period_s
            drains.append(asyncio.ensure_future(grpc_server.stop(grace_s)))
        outcomes = await asyncio.gather(*drains, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                log.error("stop_failed", error=f"{type(outcome).__name__}: {outcome}")
    if config.ready_file is not None:
        with contextlib.suppress(FileNotFoundError):
            config.ready_file.unlink()
    log.info("stopped", requests_in_flight=service.in_flight)


def _uvicorn_server(config: Any) -> Any:
    """A uvicorn ``Server`` without its own signal handling: this process handles signals."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _bounded_httptools_protocol(max_header_bytes: int) -> type:
    """uvicorn's httptools protocol, refusing a request whose head outgrows the limit (431)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    body = orjson.dumps({"error": f"request line and headers exceed {max_header_bytes} bytes"})
    refusal = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
               b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))

    class BoundedHeadProtocol(HttpToolsProtocol):  # type: ignore[misc]
        in_head = False
        head_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head, self.head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self.in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.in_head:  # this chunk ended inside a request head: it is being buffered
                self.head_bytes += len(data)
                if self.head_bytes > max_header_bytes:
                    self.in_head = False
                    self.transport.write(refusal)
                    self.transport.close()

    return BoundedHeadProtocol

"""Helpers shared by the embedded-server benchmarks: start servers, prepare requests, load loops.

Every server started here binds 127.0.0.1 and runs pinned to ``SERVER_CPU`` (``taskset``);
the benchmark process pins itself to ``CLIENT_CPU`` so that client and server never take turns
on one core. The model is the ONNX MLP of ``tests/models.py`` (300 → 256 → 128 → 1) with a
batch of 25 rows, and ONNX Runtime runs one intra-op thread everywhere: on a single pinned core,
its default of one spinning thread per core made a 64 µs prediction take 4 ms at p99.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/models.py builds the model
    sys.path.insert(0, str(ROOT))

from modelcaliper.load.grpc import GrpcTransport  # noqa: E402
from modelcaliper.load.http import HttpTransport, install_fast_loop  # noqa: E402
from modelcaliper.load.transport import Outcome, PreparedRequest, Status  # noqa: E402
from modelcaliper.wire import InferRequest, get_codec  # noqa: E402
from modelcaliper.wire import grpc_methods as gm  # noqa: E402

CLIENT_CPU, SERVER_CPU = 0, 1
ROWS = 25
MODEL_NAME = "mlp"
INTRA_OP_THREADS = 1
START_TIMEOUT_S = 120.0
GRPC_PATHS = {"v2-grpc": gm.V2_MODEL_INFER, "tfserving-grpc": gm.TFS_PREDICT}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
T = TypeVar("T")


def pin_client() -> None:
    """Run this process (and the threads it starts from now on) on the client core only."""
    os.sched_setaffinity(0, {CLIENT_CPU})


def build_model(workdir: Path) -> Path:
    """The ONNX MLP 300 → 256 → 128 → 1, written to ``workdir/mlp.onnx``."""
    from tests.models import build_onnx_mlp

    return build_onnx_mlp(workdir / f"{MODEL_NAME}.onnx", n_inputs=300, hidden=(256, 128),
                          outputs=1)


def batch(rows: int = ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """One request's inputs: ``features`` float32 [rows, 300]."""
    from tests.models import mlp_inputs

    return mlp_inputs(rows, seed=seed)


def prepare(encoding: str, inputs: dict[str, np.ndarray],
            model_name: str = MODEL_NAME) -> PreparedRequest:
    """``inputs`` encoded once as ``encoding`` (one of ``wire.ENCODINGS``), ready to send."""
    codec = get_codec(encoding)
    infer = InferRequest(inputs, model_name=model_name)
    encoded = codec.encode_request(infer)
    if codec.transport == "grpc":
        path = GRPC_PATHS[encoding]
    else:
        path = codec.path(infer)  # type: ignore[attr-defined]  # REST codecs only
    return PreparedRequest(path, encoded.body, tuple(encoded.headers),
                           rows=len(next(iter(inputs.values()))))


def decode_scores(encoding: str, outcome: Outcome) -> np.ndarray:
    """The single output of a kept response body, decoded with ``encoding``'s codec."""
    assert outcome.body is not None, "send with keep_body=True to decode the answer"
    response = get_codec(encoding).decode_response(outcome.body, outcome.headers or {})
    (scores,) = response.outputs.values()
    return np.asarray(scores)


def transport_for(encoding: str, http_port: int, grpc_port: int,
                  connections: int = 1) -> HttpTransport | GrpcTransport:
    """Our HTTP or gRPC load transport to 127.0.0.1, as ``encoding`` needs."""
    if get_codec(encoding).transport == "grpc":
        return GrpcTransport(f"127.0.0.1:{grpc_port}", channels=connections)
    return HttpTransport(f"http://127.0.0.1:{http_port}", connections=connections)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg shows them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def quantile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q`` quantile, NaN for no values."""
    return float(np.quantile(values, q)) if len(values) else float("nan")


# -- servers ---------------------------------------------------------------------------------

@dataclass
class Server:
    """A server process started by a benchmark, and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def pinned(cmd: list[str], cpu: int = SERVER_CPU) -> list[str]:
    """``cmd`` run on one core only."""
    return ["taskset", "-c", str(cpu), *cmd]


def start_caliper(model: Path, workdir: Path, *extra: str) -> Server:
    """``caliper serve-model`` on free 127.0.0.1 ports, on the server core; wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready, log_path = workdir / "ready.json", workdir / "caliper.log"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "modelcaliper.cli.main", "serve-model", str(model),
           "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
           "--intra-op-threads", str(INTRA_OP_THREADS), "--ready-file", str(ready), *extra]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(pinned(cmd), stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"serve-model did not start: {log_path.read_text()[-800:]}")
        time.sleep(0.05)
    doc = json.loads(ready.read_text())
    return Server("caliper", proc, int(doc["http_port"]), int(doc["grpc_port"]), log_path)


def wait_for_port(server: Server, port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until ``port`` on 127.0.0.1 accepts connections; fail if the server exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{server.name} did not open port {port}: "
                                   f"{server.log_path.read_text()[-1500:]}") from None
            time.sleep(0.1)


_LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")
_SS_LINE = re.compile(r"^LISTEN\s+\S+\s+\S+\s+(\S+)\s+\S+\s+users:\(\((.*)\)\)")


def listening_addresses(pids: set[int]) -> list[str]:
    """Every TCP address (``host:port``) a process in ``pids`` listens on, from ``ss -ltnp``."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        match = _SS_LINE.match(line.strip())
        if match and {int(p) for p in re.findall(r"pid=(\d+)", match.group(2))} & pids:
            found.append(match.group(1))
    return found


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (a server may fork workers)."""
    tree, todo = {pid}, [pid]
    while todo:
        children = Path(f"/proc/{todo.pop()}/task")
        for task in children.glob("*/children") if children.exists() else []:
            for child in task.read_text().split():
                if int(child) not in tree:
                    tree.add(int(child))
                    todo.append(int(child))
    return tree


def check_loopback_only(server: Server) -> list[str]:
    """The addresses ``server`` listens on; raise if any is not on 127.0.0.1."""
    addresses = listening_addresses(process_tree(server.pid))
    if not addresses:
        raise RuntimeError(f"{server.name}: ss shows no listening socket for pid {server.pid}")
    exposed = [a for a in addresses if not a.startswith(_LOOPBACK)]
    if exposed:
        server.stop()
        raise RuntimeError(f"{server.name} listens beyond loopback: {', '.join(exposed)}")
    return addresses


def rss_bytes(pid: int) -> int:
    """The resident set size of ``pid`` (``VmRSS`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far, all its threads (/proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_delay_seconds(pid: int) -> float:
    """Time the threads of ``pid`` spent runnable but waiting for a CPU (task schedstat).

    On a shared machine this is what other processes took from the server: a server that is
    slow while this grows is starved of CPU, not busy.
    """
    total_ns = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total_ns += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended between the listing and the read
    return total_ns / 1e9


# -- load loops ------------------------------------------------------------------------------

async def send(transport: HttpTransport | GrpcTransport, request: PreparedRequest,
               keep_body: bool = False, timeout_s: float = 10.0) -> Outcome:
    """One request through ``transport`` with a fixed request id."""
    return await transport.send(request, request_id="b", traceparent=TRACEPARENT,
                                timeout_s=timeout_s, keep_body=keep_body)


async def sequential(transport: HttpTransport | GrpcTransport, request: PreparedRequest,
                     count: int) -> tuple[list[float], list[dict[str, float]]]:
    """``count`` requests one at a time: client round trips (µs) and Server-Timing phases."""
    round_trips_us: list[float] = []
    timings: list[dict[str, float]] = []
    for _ in range(count):
        outcome = await send(transport, request)
        if outcome.status is not Status.OK:
            raise RuntimeError(f"request failed: {outcome.code} {outcome.error_message}")
        round_trips_us.append((outcome.done_ns - outcome.sent_ns) / 1e3)
        timings.append(outcome.server_timing_ms)
    return round_trips_us, timings


@dataclass
class ClosedLoopResult:
    """What a closed loop at a fixed concurrency achieved."""

    ok: int
    failed: int
    elapsed_s: float
    latencies_us: list[float]
    codes: dict[str, int]

    @property
    def rate_per_s(self) -> float:
        """Successful requests per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else float("nan")


async def closed_loop(transport: HttpTransport | GrpcTransport, request: PreparedRequest,
                      concurrency: int, duration_s: float, max_requests: int) -> ClosedLoopResult:
    """``concurrency`` workers sending back to back for ``duration_s`` or ``max_requests``."""
    end_s = time.perf_counter() + duration_s
    issued = ok = failed = 0
    latencies_us: list[float] = []
    codes: dict[str, int] = {}

    async def worker() -> None:
        nonlocal issued, ok, failed
        while issued < max_requests and time.perf_counter() < end_s:
            issued += 1
            outcome = await send(transport, request)
            codes[outcome.code or outcome.error_kind] = (
                codes.get(outcome.code or outcome.error_kind, 0) + 1)
            if outcome.status is Status.OK:
                ok += 1
                latencies_us.append((outcome.done_ns - outcome.sent_ns) / 1e3)
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ClosedLoopResult(ok, failed, time.perf_counter() - started, latencies_us, codes)


def run_async(coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run ``coro_fn(*args)`` on a fresh uvloop event loop (the client's loop everywhere)."""
    install_fast_loop()
    return asyncio.run(coro_fn(*args))

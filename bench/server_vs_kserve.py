"""Throughput at saturation: ``caliper serve-model`` against KServe's and MLServer's Python servers.

All three serve the same ONNX MLP (300 → 256 → 128 → 1, batch 25 per request) through an
ONNX Runtime session with the same options (one intra-op thread, optimization level ``all``,
CPU provider), on core 1; the client runs on core 0. The peers are the usual way to wrap a
model in each:

* KServe (``.bench-venv``): a ``kserve.Model`` subclass whose ``predict`` turns the v2 inputs
  into numpy and calls ``InferenceSession.run`` (a plain ``def``, as in KServe's examples),
  served by ``kserve.ModelServer`` with one worker. KServe binds 0.0.0.0 and [::] and offers
  no option to change that, so the launcher below patches uvicorn's ``Config`` and gRPC's
  ``add_insecure_port`` to bind 127.0.0.1.
* MLServer (``.bench-tools/mlserver-venv``: its pins would downgrade KServe's FastAPI and
  Locust's greenlet, so it gets a venv of its own): an ``MLModel`` runtime doing the same,
  with ``host=127.0.0.1``, inference in the server process (``parallel_workers=0``) and the
  metrics server off. MLServer has no v2 REST binary extension, so it is measured over v2
  REST JSON and gRPC only.

Per-request logging is off in both peers (uvicorn access log, KServe's latency and timing
logs), as our server has none. ``ss -ltnp`` must show every server on 127.0.0.1 only.

Load: closed loops at ``--concurrency`` requests in flight (default 8 and 32) with the same
client for every server -- our ``HttpTransport`` (as many keep-alive connections as requests
in flight) or ``GrpcTransport`` (one channel) -- over v2 REST binary, v2 REST JSON and v2
gRPC. Each cell runs ``--rounds`` times for ``--seconds``, interleaved across servers so drift
hits all alike; the figure is the median successful requests per second, and the ratio
ours / peer. Each server's answer is checked against an in-process prediction first.

Install the peers: ``.venv/bin/python bench/server_vs_kserve.py --install`` (pins in
``bench/requirements-peers.txt``).

Run: ``.venv/bin/python bench/server_vs_kserve.py [--seconds 2] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KSERVE_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
MLSERVER_VENV = ROOT / ".bench-tools" / "mlserver-venv"
MLSERVER_PYTHON = MLSERVER_VENV / "bin" / "python"
REQUIREMENTS = Path(__file__).with_name("requirements-peers.txt")
PROTOCOLS = ("v2-rest binary", "v2-rest json", "v2-grpc")
OUTPUT = "score"


# -- the peers' side: runs inside their own virtualenvs, imports nothing of ours --------------

def ort_session(model: str) -> Any:
    """An ONNX Runtime session with the embedded server's options (1 intra-op thread, all opts)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def serve_kserve(model: str, http_port: int, grpc_port: int) -> None:
    """Serve ``model`` with KServe's ModelServer on 127.0.0.1 (REST and gRPC)."""
    os.environ["KSERVE_LOGLEVEL"] = "WARNING"  # its per-request timing lines are INFO
    import grpc.aio._server
    import uvicorn

    config_init = uvicorn.Config.__init__

    def loopback_config(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.update(host="127.0.0.1", access_log=False)
        config_init(self, *args, **kwargs)

    add_port = grpc.aio._server.Server.add_insecure_port

    def loopback_port(self: Any, address: str) -> int:
        return add_port(self, "127.0.0.1:" + address.rpartition(":")[2])

    uvicorn.Config.__init__ = loopback_config  # type: ignore[method-assign]
    grpc.aio._server.Server.add_insecure_port = loopback_port  # type: ignore[method-assign]

    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    class OnnxMlp(kserve.Model):
        """The MLP behind KServe's v2 data plane."""

        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self.session = ort_session(path)
            self.ready = True

        def predict(self, payload: InferRequest, headers: Any = None,
                    response_headers: Any = None) -> InferResponse:
            feed = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
            (scores,) = self.session.run([OUTPUT], feed)
            output = InferOutput(name=OUTPUT, shape=list(scores.shape), datatype="FP32")
            output.set_data_from_numpy(scores, binary_data=payload.use_binary_outputs)
            return InferResponse(response_id=payload.id or "", model_name=self.name,
                                 infer_outputs=[output],
                                 use_binary_outputs=payload.use_binary_outputs)

    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1,
                                enable_latency_logging=False)
    server.start([OnnxMlp("mlp", model)])


def serve_mlserver(model: str, http_port: int, grpc_port: int) -> None:
    """Serve ``model`` with MLServer on 127.0.0.1 (REST and gRPC), inference in-process."""
    from mlserver import MLModel, MLServer
    from mlserver.codecs import NumpyCodec
    from mlserver.settings import ModelParameters, ModelSettings, Settings
    from mlserver.types import InferenceRequest, InferenceResponse

    class OnnxMlpRuntime(MLModel):
        """The MLP as an MLServer custom runtime."""

        async def load(self) -> bool:
            self.session = ort_session(str(self.settings.parameters.uri))
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            feed = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
            (scores,) = self.session.run([OUTPUT], feed)
            return InferenceResponse(model_name=self.name,
                                     outputs=[NumpyCodec.encode_output(OUTPUT, scores)])

    # MLServer imports a runtime by its dotted path: make the class reachable as __main__'s.
    globals()["OnnxMlpRuntime"] = OnnxMlpRuntime
    OnnxMlpRuntime.__qualname__ = "OnnxMlpRuntime"
    settings = Settings(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port,
                        metrics_endpoint=None, parallel_workers=0, debug=False,
                        model_repository_root=str(Path(model).parent))
    model_settings = ModelSettings(name="mlp", implementation=OnnxMlpRuntime,
                                   parameters=ModelParameters(uri=model))
    asyncio.run(MLServer(settings).start([model_settings]))


# -- the benchmark's side ---------------------------------------------------------------------

def install_peers() -> None:
    """Install KServe into .bench-venv and MLServer into its own venv, from the pinned list."""
    groups: dict[str, list[str]] = {}
    section = ""
    for line in REQUIREMENTS.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if line.startswith("# [") and "]" in line:
            section = line[3:line.index("]")]
        elif text:
            groups.setdefault(section, []).append(text)
    for python, section in ((KSERVE_PYTHON, "kserve"), (MLSERVER_PYTHON, "mlserver")):
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(python.parents[1])], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *groups[section]],
                       check=True)


def start_peer(kind: str, python: Path, model: Path, work: Path) -> Any:
    """Start a peer server pinned to the server core; return it once both ports accept."""
    import _servers as sv

    http_port, grpc_port = sv.free_port(), sv.free_port()
    log_path = work / f"{kind}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            sv.pinned([str(python), __file__, "--serve", kind, str(model), str(http_port),
                       str(grpc_port)]), stdout=log, stderr=subprocess.STDOUT, cwd=work)
    server = sv.Server(kind, proc, http_port, grpc_port, log_path)
    sv.wait_for_port(server, http_port)
    sv.wait_for_port(server, grpc_port)
    return server


async def wait_ready(server: Any, expected: Any, timeout_s: float = 60.0) -> None:
    """Send one request per protocol until it succeeds; check the scores are the model's."""
    import _servers as sv
    import numpy as np

    for encoding in protocols_of(server.name):
        transport = sv.transport_for(encoding, server.http_port, server.grpc_port)
        await transport.start()
        request = sv.prepare(encoding, sv.batch())
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            outcome = await sv.send(transport, request, keep_body=True)
            if outcome.status is sv.Status.OK:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{server.name} {encoding}: {outcome.code} "
                                   f"{outcome.error_message}")
            await asyncio.sleep(0.2)
        await transport.close()
        scores = sv.decode_scores(encoding, outcome).astype(np.float32)
        if not np.allclose(scores, expected, rtol=1e-6, atol=1e-7):
            raise RuntimeError(f"{server.name} {encoding}: scores differ from the model's")


@dataclass
class Cell:
    """One server's closed-loop run: requests/s, p50 ms, server CPU µs per request, failures."""

    rate_per_s: float
    p50_ms: float
    cpu_us: float
    failed: int


def protocols_of(name: str) -> tuple[str, ...]:
    """The protocols a server is measured over (MLServer has no REST binary extension)."""
    return tuple(p for p in PROTOCOLS if not (name == "mlserver" and p == "v2-rest binary"))


async def measure(servers: list[Any], expected: Any, args: argparse.Namespace) -> dict:
    """Closed-loop rates per (protocol, concurrency, server), ``rounds`` interleaved rounds."""
    import _servers as sv

    for server in servers:
        await wait_ready(server, expected)
    cells: dict[tuple[str, int, str], list[Cell]] = {}
    for encoding in PROTOCOLS:
        request = sv.prepare(encoding, sv.batch())
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for server in servers:
                    if encoding not in protocols_of(server.name):
                        continue
                    transport = sv.transport_for(encoding, server.http_port, server.grpc_port,
                                                 concurrency if "rest" in encoding else 1)
                    await transport.start()
                    await sv.closed_loop(transport, request, concurrency, 0.5, 100_000)
                    cpu_s = sv.cpu_seconds(server.pid)
                    result = await sv.closed_loop(transport, request, concurrency,
                                                  args.seconds, 200_000)
                    cpu_us = (sv.cpu_seconds(server.pid) - cpu_s) * 1e6 / max(1, result.ok)
                    await transport.close()
                    cells.setdefault((encoding, concurrency, server.name), []).append(
                        Cell(result.rate_per_s, sv.median(result.latencies_us) / 1e3, cpu_us,
                             result.failed))
    return cells


def report(servers: list[Any], cells: dict, args: argparse.Namespace) -> None:
    """Print requests/s, p50 and server CPU per request per cell, and the ratios ours / peer."""
    import _servers as sv

    names = [s.name for s in servers]
    peers = [n for n in names if n != "caliper"]
    print(f"ONNX MLP 300→256→128→1, batch {sv.ROWS}; servers on core {sv.SERVER_CPU}, client "
          f"on core {sv.CLIENT_CPU}; {args.rounds} interleaved rounds × {args.seconds:g} s per "
          "cell; medians over rounds; ratios are medians of per-round ratios (paired runs)")
    print(f"{'protocol':<16}{'in flight':>10}{'server':>10}{'req/s':>8}{'p50 ms':>8}"
          f"{'CPU µs/req':>11}{'failed':>8}{'ours/peer req/s':>17}{'peer/ours CPU':>15}")
    for encoding in PROTOCOLS:
        for concurrency in args.concurrency:
            ours = cells[encoding, concurrency, "caliper"]
            for name in names:
                runs = cells.get((encoding, concurrency, name))
                if not runs:
                    continue
                line = (f"{encoding:<16}{concurrency:>10}{name:>10}"
                        f"{sv.median([c.rate_per_s for c in runs]):>8.0f}"
                        f"{sv.median([c.p50_ms for c in runs]):>8.2f}"
                        f"{sv.median([c.cpu_us for c in runs]):>11.0f}"
                        f"{sum(c.failed for c in runs):>8}")
                if name in peers:
                    pairs = list(zip(ours, runs, strict=True))
                    rate = sv.median([a.rate_per_s / b.rate_per_s for a, b in pairs])
                    cpu = sv.median([b.cpu_us / a.cpu_us for a, b in pairs])
                    line += f"{rate:>16.2f}x{cpu:>14.2f}x"
                print(line)


def main() -> int:
    """Start the three servers, check their sockets and answers, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32],
                        help="requests in flight")
    parser.add_argument("--no-mlserver", action="store_true", help="KServe only")
    parser.add_argument("--install", action="store_true", help="install the peers and exit")
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "MODEL", "HTTP", "GRPC"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, model, http_port, grpc_port = args.serve
        serve = serve_kserve if kind == "kserve" else serve_mlserver
        serve(model, int(http_port), int(grpc_port))
        return 0
    if args.install:
        install_peers()
        return 0

    import _servers as sv
    import numpy as np

    if not KSERVE_PYTHON.exists():
        print("skipped: KServe is not installed; run "
              ".venv/bin/python bench/server_vs_kserve.py --install")
        return 0
    print(f"load average at the start: {sv.load_average()}")
    with tempfile.TemporaryDirectory(prefix="server-vs-kserve-") as tmp:
        work = Path(tmp)
        model = sv.build_model(work)
        expected = ort_session(str(model)).run([OUTPUT], sv.batch())[0]
        sv.pin_client()
        servers = [sv.start_caliper(model, work / "caliper")]
        try:
            servers.append(start_peer("kserve", KSERVE_PYTHON, model, work))
            if not args.no_mlserver and MLSERVER_PYTHON.exists():
                servers.append(start_peer("mlserver", MLSERVER_PYTHON, model, work))
            for server in servers:
                print(f"{server.name} (pid {server.pid}) listens on: "
                      f"{', '.join(sv.check_loopback_only(server))}")
            cells = sv.run_async(measure, servers, np.asarray(expected), args)
        finally:
            for server in servers:
                server.stop()
    report(servers, cells, args)
    print(f"load average at the end: {sv.load_average()}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

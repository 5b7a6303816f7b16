"""gRPC transport capacity: calls/s of ``GrpcTransport`` against plain ``grpc.aio`` baselines.

A gRPC server in a child process (its own GIL) answers TF Serving Predict with a fixed 25-score
response. In the same run, the client process makes unary calls three ways:

* ``ours``      -- ``GrpcTransport.send`` with a pre-serialized demo-shaped request (25 rows x
  300 float32 + 20 string features), metadata, timestamps and an ``Outcome`` per call;
* ``raw bytes`` -- a bare identity-serializer ``grpc.aio`` call with the same bytes and the same
  channel options: the floor, so ours − raw is the transport's own per-call overhead;
* ``stub``      -- a plain ``grpc.aio`` stub (default channel options) with message objects, as
  a typical client does: the ``PredictRequest`` is serialized and the response parsed per call.

Each is measured sequentially (one call at a time) and concurrently (``--concurrency`` calls in
flight), in ``--rounds`` interleaved rounds so that drift on a shared machine hits all three
alike; each cell is the median over rounds. Printed: calls/s, the median per-call time, and the
ratios ours/stub and ours/raw. Client and server are both Python on the same machine, so the
concurrent numbers are bounded by the shared cores.

Run: ``.venv/bin/python bench/grpc_transport.py [--seconds 2] [--rounds 3] [--concurrency 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import numpy as np

from modelcaliper.load.grpc import GrpcTransport, _channel_options
from modelcaliper.load.transport import PreparedRequest, Status
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire.protos import tfserving_pb2 as tfpb
from modelcaliper.wire.tensors import InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec

CODEC = TFServingGrpcCodec()
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def demo_request() -> bytes:
    """The demo-shaped Predict request, serialized."""
    rng = np.random.default_rng(0)
    vocab = np.array([f"value_{i:03d}".encode() for i in range(200)], dtype=object)
    inputs = {"dense": rng.random((25, 300), dtype=np.float32),
              "categorical": vocab[rng.integers(0, 200, (25, 20))]}
    return CODEC.encode_request(InferRequest(inputs, model_name="ranker")).body


def serve() -> None:
    """Child process: answer Predict with a fixed response; print the port, run until killed."""
    reply = CODEC.encode_response(
        InferResponse({"scores": np.linspace(0, 1, 25, dtype=np.float32).reshape(25, 1)},
                      model_name="ranker"), InferRequest({}, model_name="ranker")).body

    async def predict(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (gm.bytes_service_handler(gm.TFS_PREDICTION_SERVICE, {"Predict": predict}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(run())


async def measure(call: Callable[[], Awaitable[object]], seconds: float,
                  concurrency: int) -> tuple[float, float, float]:
    """``(calls/s, median µs per call, client CPU µs per call)`` of ``call`` for ``seconds``.

    CPU time per call (this process, all threads) is steadier than calls/s when other work
    shares the machine, so it is the better measure of a client's own overhead.
    """
    for _ in range(200):
        await call()  # warm up the connection and caches
    samples_us: list[float] = []
    count = 0
    end_s = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < end_s:
            t0 = time.perf_counter_ns()
            await call()
            samples_us.append((time.perf_counter_ns() - t0) / 1e3)
            count += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_us = (time.process_time() - cpu_started) * 1e6 / count
    return count / (time.perf_counter() - started), statistics.median(samples_us), cpu_us


async def bench(port: int, seconds: float, concurrency: int,
                rounds: int) -> dict[str, dict[int, tuple]]:
    """Every client kind at concurrency 1 and ``concurrency``; medians over ``rounds``."""
    body = demo_request()
    message = tfpb.PredictRequest.FromString(body)
    address = f"127.0.0.1:{port}"
    transport = GrpcTransport(address)
    await transport.start()
    prepared = PreparedRequest(gm.TFS_PREDICT, body)
    raw_channel = grpc.aio.insecure_channel(address, options=_channel_options(64 << 20))
    raw = gm.unary_bytes_call(raw_channel, gm.TFS_PREDICT)
    channel = grpc.aio.insecure_channel(address)
    stub = channel.unary_unary(gm.TFS_PREDICT,
                               request_serializer=tfpb.PredictRequest.SerializeToString,
                               response_deserializer=tfpb.PredictResponse.FromString)
    metadata = (("x-request-id", "r"), ("traceparent", TRACEPARENT))

    async def ours() -> None:
        outcome = await transport.send(prepared, request_id="r", traceparent=TRACEPARENT,
                                       timeout_s=10)
        assert outcome.status is Status.OK, outcome.error_message

    async def raw_bytes() -> None:
        await raw(body, timeout=10, metadata=metadata)

    async def with_messages() -> None:
        await stub(message, timeout=10, metadata=metadata)

    kinds = (("ours", ours), ("raw bytes", raw_bytes), ("stub", with_messages))
    cells: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for _ in range(rounds):
        for name, call in kinds:
            for c in (1, concurrency):
                cells.setdefault((name, c), []).append(await measure(call, seconds, c))
    await transport.close()
    await raw_channel.close()
    await channel.close()
    return {name: {c: tuple(statistics.median(cell[i] for cell in cells[name, c])
                            for i in range(3)) for c in (1, concurrency)}
            for name, _ in kinds}


def main() -> int:
    """Start the server child, measure, print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        results = asyncio.run(bench(port, args.seconds, args.concurrency, args.rounds))
    finally:
        child.terminate()
        child.wait(30)
    print(f"request {len(demo_request())} bytes; {args.rounds} rounds of {args.seconds:g} s "
          "per cell (medians)")
    c = args.concurrency
    print(f"{'client':<10} {'seq calls/s':>12} {'seq µs/call':>12} {'seq CPU µs':>11} "
          f"{f'c={c} calls/s':>13} {f'c={c} CPU µs':>12}")
    for name, cells in results.items():
        (seq_rate, seq_us, seq_cpu), (con_rate, _, con_cpu) = cells[1], cells[c]
        print(f"{name:<10} {seq_rate:>12.0f} {seq_us:>12.1f} {seq_cpu:>11.1f} "
              f"{con_rate:>13.0f} {con_cpu:>12.1f}")
    ours, raw, stub = results["ours"], results["raw bytes"], results["stub"]
    for label, k in (("sequential", 1), (f"concurrent (c={c})", c)):
        print(f"{label}: calls/s ours/stub = {ours[k][0] / stub[k][0]:.2f}x, "
              f"ours/raw = {ours[k][0] / raw[k][0]:.2f}x; client CPU per call ours/stub = "
              f"{ours[k][2] / stub[k][2]:.2f}x, ours/raw = {ours[k][2] / raw[k][2]:.2f}x")
    print(f"per-call overhead over a raw bytes call: {ours[c][2] - raw[c][2]:.1f} µs of client "
          f"CPU (concurrent), {ours[1][1] - raw[1][1]:.1f} µs of latency (sequential medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

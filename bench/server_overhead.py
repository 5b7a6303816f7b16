"""Embedded-server overhead: what ``caliper serve-model`` adds on top of the model's own time.

Model: the ONNX MLP 300 → 256 → 128 → 1, batch 25 (float32 [25, 300] in, [25, 1] out).

Baseline: the in-process ``OnnxRuntime.predict`` median, measured in a child process on the
server core with the server's ONNX Runtime settings (one intra-op thread, optimization
``all``), once before and once after the server runs; both samples are pooled.

Then, with the server pinned to core 1 and this client to core 0, requests go one at a time
over loopback (``--count`` per encoding after ``--warmup``, in interleaved rounds so drift hits
every encoding alike) with our own transports (``HttpTransport``, ``GrpcTransport``):

* server overhead = median Server-Timing ``total`` − predict median (goal ≤ 0.2 ms for the
  binary encodings; tfserving-rest columnar, whose decode parses 7,500 JSON numbers, is shown
  for reference), with the median of each phase (recv, decode, queue, compute, encode);
* client overhead = median client round trip − predict median, for v2-grpc and tfserving-grpc
  (goal ≤ 1 ms) and v2-rest binary and tfserving-rest columnar for reference, and the ratio
  client median / predict median.

Every answer of the first round is decoded and compared with the in-process prediction.

Run: ``.venv/bin/python bench/server_overhead.py [--count 3000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _servers as sv
import numpy as np

ENCODINGS = ("v2-grpc", "tfserving-grpc", "v2-rest binary", "tfserving-rest columnar")
GRPC_ENCODINGS = ("v2-grpc", "tfserving-grpc")
BINARY_ENCODINGS = (*GRPC_ENCODINGS, "v2-rest binary")
PHASES = ("recv", "decode", "queue", "compute", "encode", "total")
SERVER_GOAL_MS = 0.2
CLIENT_GOAL_MS = 1.0


def predict_baseline(model: Path, count: int, out: Path) -> None:
    """Child mode: time ``runtime.predict`` ``count`` times; write samples (µs) and scores."""
    from modelcaliper.server.runtimes.onnx import OnnxRuntime

    runtime = OnnxRuntime(model, intra_op_threads=sv.INTRA_OP_THREADS)
    inputs = sv.batch()
    for _ in range(300):
        runtime.predict(inputs)
    samples_us = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        runtime.predict(inputs)
        samples_us.append((time.perf_counter_ns() - t0) / 1e3)
    (scores,) = runtime.predict(inputs).values()
    np.save(out.with_suffix(".npy"), scores)
    out.write_text(json.dumps(samples_us))


def run_baseline(model: Path, count: int, out: Path) -> list[float]:
    """Predict samples (µs) from a child process pinned to the server core."""
    cmd = sv.pinned([sys.executable, __file__, "--predict-baseline", str(model),
                     "--count", str(count), "--out", str(out)])
    subprocess.run(cmd, check=True, timeout=300)
    return list(json.loads(out.read_text()))


async def measure(server: sv.Server, expected: np.ndarray, count: int, rounds: int,
                  warmup: int) -> dict[str, tuple[list[float], list[dict[str, float]]]]:
    """Sequential round trips and server phases per encoding, over interleaved rounds."""
    inputs = sv.batch()
    transports = {e: sv.transport_for(e, server.http_port, server.grpc_port) for e in ENCODINGS}
    requests = {e: sv.prepare(e, inputs) for e in ENCODINGS}
    for encoding, transport in transports.items():
        await transport.start()
        outcome = await sv.send(transport, requests[encoding], keep_body=True)
        # TF REST JSON carries no dtype: its numbers parse as float64, exact float32 values.
        scores = sv.decode_scores(encoding, outcome).astype(expected.dtype)
        if not np.array_equal(scores, expected):
            raise RuntimeError(f"{encoding}: the server's scores differ from runtime.predict")
        await sv.sequential(transport, requests[encoding], warmup)
    results: dict[str, tuple[list[float], list[dict[str, float]]]] = {
        e: ([], []) for e in ENCODINGS}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for encoding in ENCODINGS:
            trips, timings = await sv.sequential(transports[encoding], requests[encoding],
                                                 per_round)
            results[encoding][0].extend(trips)
            results[encoding][1].extend(timings)
    for transport in transports.values():
        await transport.close()
    return results


def report(predict_us: list[float], results: dict, args: argparse.Namespace) -> bool:
    """Print the tables and verdicts; True when every goal is met."""
    predict_ms = sv.median(predict_us) / 1e3
    print(f"model: ONNX MLP 300→256→128→1, batch {sv.ROWS}; ONNX Runtime "
          f"{sv.INTRA_OP_THREADS} intra-op thread; server on core {sv.SERVER_CPU}, client on "
          f"core {sv.CLIENT_CPU}; {args.count} sequential requests per encoding "
          f"({args.rounds} interleaved rounds) after {args.warmup} warm-up")
    print(f"in-process runtime.predict: median {predict_ms:.4f} ms, p99 "
          f"{sv.quantile(predict_us, 0.99) / 1e3:.4f} ms ({len(predict_us)} calls)")
    print()
    print("server phases, medians in ms (Server-Timing):")
    print(f"{'encoding':<24}" + "".join(f"{p:>9}" for p in PHASES)
          + f"{'total−predict':>15}{'total/predict':>15}  goal")
    ok = True
    for encoding, (_, timings) in results.items():
        medians = {p: sv.median([t.get(p, 0.0) for t in timings]) for p in PHASES}
        overhead_ms = medians["total"] - predict_ms
        if encoding in BINARY_ENCODINGS:
            met = overhead_ms <= SERVER_GOAL_MS
            ok &= met
            goal = f"≤ {SERVER_GOAL_MS} ms: {'met' if met else 'MISSED'}"
        else:
            goal = "(reference: parsing 7,500 JSON numbers)"
        print(f"{encoding:<24}" + "".join(f"{medians[p]:>9.4f}" for p in PHASES)
              + f"{overhead_ms:>15.4f}{medians['total'] / predict_ms:>14.2f}x  {goal}")
    print()
    print("sequential client over loopback, ms:")
    print(f"{'encoding':<24}{'median':>9}{'p99':>9}{'median−predict':>16}{'ratio':>9}  goal")
    for encoding, (trips, _) in results.items():
        client_ms = sv.median(trips) / 1e3
        overhead_ms = client_ms - predict_ms
        if encoding in GRPC_ENCODINGS:
            met = overhead_ms <= CLIENT_GOAL_MS
            ok &= met
            goal = f"≤ {CLIENT_GOAL_MS} ms: {'met' if met else 'MISSED'}"
        else:
            goal = "(reference)"
        print(f"{encoding:<24}{client_ms:>9.4f}{sv.quantile(trips, 0.99) / 1e3:>9.4f}"
              f"{overhead_ms:>16.4f}{client_ms / predict_ms:>8.2f}x  {goal}")
    return ok


def main() -> int:
    """Measure the baseline, start the server, measure every encoding, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="requests per encoding")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per encoding")
    parser.add_argument("--predict-baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.predict_baseline:
        predict_baseline(args.predict_baseline, args.count, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="server-overhead-") as tmp:
        work = Path(tmp)
        model = sv.build_model(work)
        predict_us = run_baseline(model, args.count, work / "before.json")
        expected = np.load(work / "before.npy")
        sv.pin_client()
        server = sv.start_caliper(model, work / "server")
        try:
            sv.check_loopback_only(server)
            results = sv.run_async(measure, server, expected, args.count, args.rounds,
                                   args.warmup)
        finally:
            server.stop()
        predict_us += run_baseline(model, args.count, work / "after.json")
    met = report(predict_us, results, args)
    print(f"load average (1/5/15 min) at the end: {sv.load_average()}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

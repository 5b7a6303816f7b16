"""Codec speed on the demo-shaped batch: 25 rows x (300 float32 + 20 string features).

Prints, per encoding and per tensor layout, the median encode and decode time of one request
and two ratios measured in the same run:

* ``vs naive`` -- the naive baseline's median over the fast path's (higher is better): for
  the gRPC encodings, filling repeated ``float_val`` / ``fp32_contents`` from ``tolist()``;
  for the JSON encodings, ``json.dumps`` of ``arr.tolist()``;
* ``vs orjson`` -- for the JSON encodings, the fast path's median over ``orjson.dumps`` of the
  same arrays (the floor for any JSON encoder; lower is better, goal <= 3).

Layouts: ``grouped`` sends two tensors ([25,300] FP32 and [25,20] BYTES); ``per-feature``
sends 320 tensors of shape [25], as a model with one input per feature receives them.

Run: ``.venv/bin/python bench/wire_codecs.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import orjson

from modelcaliper.wire import ENCODINGS, InferRequest, get_codec
from modelcaliper.wire.protos import openinference_pb2 as v2pb
from modelcaliper.wire.protos import tfserving_pb2 as tfpb

ROWS, NUMERIC, STRINGS = 25, 300, 20


def demo_batch(layout: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The demo-shaped batch as named arrays, in one of the two layouts."""
    rng = np.random.default_rng(seed)
    numeric = rng.lognormal(0.0, 1.0, (ROWS, NUMERIC)).astype(np.float32)
    numeric[rng.random((ROWS, NUMERIC)) < 0.3] = 0.0  # sparse features
    vocab = np.array([f"value_{i:03d}".encode() for i in range(200)], dtype=object)
    strings = vocab[rng.integers(0, vocab.size, (ROWS, STRINGS))]
    if layout == "grouped":
        return {"dense": numeric, "categorical": strings}
    out = {f"num_{i:03d}": np.ascontiguousarray(numeric[:, i]) for i in range(NUMERIC)}
    out.update({f"cat_{j:02d}": strings[:, j].copy() for j in range(STRINGS)})
    return out


def median_us(fn: Callable[[], object], *, min_reps: int, min_s: float) -> float:
    """Median wall time of ``fn`` in microseconds over enough repetitions to be stable."""
    fn()  # warm caches
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_reps or time.perf_counter() - start < min_s:
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
        if len(samples) >= 100_000:
            break
    return statistics.median(samples)


def naive_tfserving(arrays: dict[str, np.ndarray]) -> bytes:
    """PredictRequest built with repeated *_val fields, the way many clients do it."""
    req = tfpb.PredictRequest()
    req.model_spec.name = "ranker"
    for name, arr in arrays.items():
        t = req.inputs[name]
        for d in arr.shape:
            t.tensor_shape.dim.add().size = d
        if arr.dtype == object:
            t.dtype = tfpb.DT_STRING
            t.string_val.extend(arr.ravel().tolist())
        else:
            t.dtype = tfpb.DT_FLOAT
            t.float_val.extend(arr.ravel().tolist())
    return req.SerializeToString()


def naive_v2grpc(arrays: dict[str, np.ndarray]) -> bytes:
    """ModelInferRequest built with typed contents fields."""
    req = v2pb.ModelInferRequest(model_name="ranker")
    for name, arr in arrays.items():
        t = req.inputs.add(name=name, shape=list(arr.shape))
        if arr.dtype == object:
            t.datatype = "BYTES"
            t.contents.bytes_contents.extend(arr.ravel().tolist())
        else:
            t.datatype = "FP32"
            t.contents.fp32_contents.extend(arr.ravel().tolist())
    return req.SerializeToString()


def naive_json(arrays: dict[str, np.ndarray]) -> bytes:
    """The stdlib way: ``json.dumps`` of nested Python lists."""
    body = {
        name: [v.decode() for v in arr.ravel()] if arr.dtype == object else arr.tolist()
        for name, arr in arrays.items()
    }
    return json.dumps({"inputs": body}).encode()


def orjson_floor(arrays: dict[str, np.ndarray]) -> bytes:
    """orjson on the same arrays: no JSON encoder can be much faster than this."""
    body = {
        name: [v.decode() for v in arr.ravel()] if arr.dtype == object else arr
        for name, arr in arrays.items()
    }
    return orjson.dumps({"inputs": body}, option=orjson.OPT_SERIALIZE_NUMPY)


NAIVE = {
    "tfserving-grpc": naive_tfserving,
    "v2-grpc": naive_v2grpc,
    "tfserving-rest rows": naive_json,
    "tfserving-rest columnar": naive_json,
    "v2-rest json": naive_json,
    "v2-rest binary": naive_json,
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per encoding and layout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke run)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    reps, min_s = (20, 0.05) if args.quick else (200, 0.5)

    results = []
    header = (
        f"{'encoding':<26}{'layout':<13}{'bytes':>9}{'encode µs':>11}{'decode µs':>11}"
        f"{'naive µs':>10}{'vs naive':>10}{'vs orjson':>11}"
    )
    print(header)
    print("-" * len(header))
    for layout in ("grouped", "per-feature"):
        arrays = demo_batch(layout)
        floor_us = median_us(partial(orjson_floor, arrays), min_reps=reps, min_s=min_s)
        for name in ENCODINGS:
            codec = get_codec(name)
            request = InferRequest(arrays, model_name="ranker")
            encoded = codec.encode_request(request)
            headers = dict(encoded.headers)
            enc_us = median_us(partial(codec.encode_request, request), min_reps=reps, min_s=min_s)
            dec_us = median_us(
                partial(codec.decode_request, encoded.body, headers), min_reps=reps, min_s=min_s
            )
            naive = NAIVE[name]
            naive_us = median_us(partial(naive, arrays), min_reps=max(5, reps // 10), min_s=min_s)
            is_json = "rest" in name and "binary" not in name
            row = {
                "encoding": name,
                "layout": layout,
                "request_bytes": len(encoded.body),
                "encode_us": round(enc_us, 1),
                "decode_us": round(dec_us, 1),
                "naive_encode_us": round(naive_us, 1),
                "speedup_vs_naive": round(naive_us / enc_us, 1),
                "ratio_vs_orjson": round(enc_us / floor_us, 2) if is_json else None,
            }
            results.append(row)
            vs_orjson = f"{row['ratio_vs_orjson']:.2f}x" if is_json else "-"
            print(
                f"{name:<26}{layout:<13}{len(encoded.body):>9}{enc_us:>11.1f}{dec_us:>11.1f}"
                f"{naive_us:>10.1f}{row['speedup_vs_naive']:>9.1f}x{vs_orjson:>11}"
            )
        print(f"{'(orjson.dumps floor)':<26}{layout:<13}{'':>9}{floor_us:>11.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

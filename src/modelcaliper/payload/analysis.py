"""What each wire encoding and compression costs for one model: bytes, CPU time, wire time.

For every batch size × encoding × compression, the same requests (built once from the rows)
go through the real codec: the client side serializes and compresses, the server side
decompresses and parses, and a response with the signature's outputs is encoded back the way
that client expects. Bytes are body bytes (no HTTP or HTTP/2 framing), averaged per request;
times are the median of many timed calls per request.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelcaliper.errors import UsageError, WireError
from modelcaliper.payload.whatif import shared_context_whatif, short_names_whatif
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire import ENCODINGS, Codec, DType, InferRequest, InferResponse, get_codec
from modelcaliper.wire.compression import COMPRESSIONS, Compression, compress, decompress
from modelcaliper.workload.requests import build_requests
from modelcaliper.workload.synthetic import generate_tensor

__all__ = [
    "GRPC_COMPRESSIONS",
    "REFERENCE_LINK_BITS_PER_S",
    "PayloadReport",
    "PayloadRow",
    "PayloadSettings",
    "TimingPolicy",
    "allowed_compressions",
    "analyse_payload",
    "median_call_us",
    "synthetic_responses",
]

GRPC_COMPRESSIONS: tuple[Compression, ...] = ("none", "gzip", "deflate")
"""Compressions gRPC negotiates as message encodings (zstd is HTTP-only here)."""

REFERENCE_LINK_BITS_PER_S = 100e6
"""The second link rate every report shows next to the chosen one: 100 Mbit/s."""

DEFAULT_OUTPUT = TensorSpec("score", DType.FP32, (-1, 1), {"generator": {"kind": "uniform"}})
"""The response assumed for a signature that declares no outputs: one score per row."""


@dataclass(frozen=True)
class TimingPolicy:
    """How long to time a call: ≥ ``min_samples`` and ``min_time_s``, at most ``max_time_s``."""

    min_samples: int = 20
    min_time_s: float = 0.01
    max_time_s: float = 0.2


@dataclass(frozen=True)
class PayloadSettings:
    """What to measure: batch sizes, encodings, compressions and the link to price it on."""

    batch_sizes: tuple[int, ...] = (5, 25)
    encodings: tuple[str, ...] = ENCODINGS
    compressions: tuple[Compression, ...] = COMPRESSIONS
    level: int | None = None
    link_bits_per_s: float = 1e9
    group_by: str | None = None
    max_requests: int = 8
    model_name: str = "model"
    seed: int = 0
    timing: TimingPolicy = field(default_factory=TimingPolicy)


@dataclass(frozen=True)
class PayloadRow:
    """The measured cost of one batch size × encoding × compression, per request."""

    encoding: str
    compression: str
    batch_size: int
    requests: int
    mean_rows: float
    request_bytes: int
    uncompressed_request_bytes: int
    response_bytes: int
    uncompressed_response_bytes: int
    encode_us: float
    decode_us: float
    wire_ms: float
    wire_ms_100mbit: float

    @property
    def compression_ratio(self) -> float:
        """Uncompressed over compressed request bytes (1.0 without compression)."""
        return self.uncompressed_request_bytes / self.request_bytes if self.request_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field and the compression ratio."""
        out = asdict(self)
        out["compression_ratio"] = round(self.compression_ratio, 4)
        return out


@dataclass
class PayloadReport:
    """Every measured row, the what-ifs, and the facts needed to read them."""

    rows: list[PayloadRow]
    what_if: dict[str, Any]
    link_bits_per_s: float
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"rows": [...], "what_if": {...}, ...}``."""
        return {
            "rows": [row.to_dict() for row in self.rows],
            "what_if": self.what_if,
            "link_bits_per_s": self.link_bits_per_s,
            "reference_link_bits_per_s": REFERENCE_LINK_BITS_PER_S,
            "skipped": self.skipped,
        }


def allowed_compressions(codec: Codec) -> tuple[Compression, ...]:
    """The compressions an encoding can use: all of them over HTTP, none/gzip/deflate over gRPC."""
    return GRPC_COMPRESSIONS if codec.transport == "grpc" else COMPRESSIONS


def median_call_us(calls: Sequence[Callable[[], object]], policy: TimingPolicy) -> float:
    """Median duration of one call in µs, calling ``calls`` round-robin until ``policy`` is met."""
    for call in calls:
        call()  # warm-up: first calls pay for imports, caches and allocations
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    while True:
        for call in calls:
            t0 = clock()
            call()
            samples.append(clock() - t0)
        elapsed_s = (clock() - start) / 1e9
        if elapsed_s >= policy.max_time_s:
            break
        if len(samples) >= policy.min_samples and elapsed_s >= policy.min_time_s:
            break
    return statistics.median(samples) / 1000.0


def synthetic_responses(
    signature: Signature, requests: Sequence[InferRequest], seed: int
) -> list[InferResponse]:
    """One response per request with the signature's outputs (or a ``score``), seeded."""
    specs = signature.outputs or (DEFAULT_OUTPUT,)
    responses = []
    for index, request in enumerate(requests):
        outputs = {}
        for spec in specs:
            rng = np.random.default_rng([seed, index, zlib.crc32(spec.name.encode("utf-8"))])
            outputs[spec.name] = generate_tensor(spec, request.batch_size, rng)
        responses.append(InferResponse(outputs=outputs, model_name=request.model_name))
    return responses


def wire_ms(total_bytes: float, link_bits_per_s: float) -> float:
    """Milliseconds to move ``total_bytes`` over a link of ``link_bits_per_s``."""
    return total_bytes * 8 / link_bits_per_s * 1000.0


def measure(
    encoding: str,
    codec: Codec,
    requests: Sequence[InferRequest],
    responses: Sequence[InferResponse],
    compression: Compression,
    settings: PayloadSettings,
    batch_size: int,
) -> PayloadRow:
    """Bytes and timings of ``requests`` through ``codec`` with ``compression``."""
    level = settings.level
    encoded = [codec.encode_request(r) for r in requests]
    bodies = [compress(e.body, compression, level) for e in encoded]
    headers = [dict(e.headers) for e in encoded]
    decoded = [
        codec.decode_request(decompress(b, compression), h)
        for b, h in zip(bodies, headers, strict=True)
    ]
    answers = [
        codec.encode_response(resp, req) for resp, req in zip(responses, decoded, strict=True)
    ]
    answer_bodies = [compress(a.body, compression, level) for a in answers]

    def encode_call(request: InferRequest) -> Callable[[], object]:
        return lambda: compress(codec.encode_request(request).body, compression, level)

    def decode_call(body: bytes, head: Mapping[str, str]) -> Callable[[], object]:
        return lambda: codec.decode_request(decompress(body, compression), head)

    encode_us = median_call_us([encode_call(r) for r in requests], settings.timing)
    decode_us = median_call_us(
        [decode_call(b, h) for b, h in zip(bodies, headers, strict=True)], settings.timing
    )
    count = len(requests)
    request_bytes = sum(len(b) for b in bodies) / count
    response_bytes = sum(len(b) for b in answer_bodies) / count
    return PayloadRow(
        encoding=encoding,
        compression=compression,
        batch_size=batch_size,
        requests=count,
        mean_rows=round(sum(r.batch_size for r in requests) / count, 2),
        request_bytes=round(request_bytes),
        uncompressed_request_bytes=round(sum(len(e.body) for e in encoded) / count),
        response_bytes=round(response_bytes),
        uncompressed_response_bytes=round(sum(len(a.body) for a in answers) / count),
        encode_us=round(encode_us, 2),
        decode_us=round(decode_us, 2),
        wire_ms=round(wire_ms(request_bytes + response_bytes, settings.link_bits_per_s), 4),
        wire_ms_100mbit=round(
            wire_ms(request_bytes + response_bytes, REFERENCE_LINK_BITS_PER_S), 4
        ),
    )


def analyse_payload(
    signature: Signature, columns: Mapping[str, np.ndarray], settings: PayloadSettings
) -> PayloadReport:
    """Measure every batch size × encoding × compression of ``settings`` on rows ``columns``."""
    if not settings.batch_sizes:
        raise UsageError("give at least one batch size")
    codecs = {name: get_codec(name) for name in settings.encodings}
    for codec in codecs.values():
        if "signature" in vars(codec) and codec.signature is None:  # type: ignore[attr-defined]
            # A server knows its model's signature and decodes JSON numbers to its dtypes.
            codec.signature = signature  # type: ignore[attr-defined]
    rows: list[PayloadRow] = []
    skipped: list[dict[str, str]] = []
    requests_by_batch: dict[int, list[InferRequest]] = {}
    for batch_size in settings.batch_sizes:
        requests = build_requests(
            columns,
            signature,
            batch_size,
            group_by=settings.group_by,
            model_name=settings.model_name,
            max_requests=settings.max_requests,
        )
        requests_by_batch[batch_size] = requests
        responses = synthetic_responses(signature, requests, settings.seed)
        for encoding, codec in codecs.items():
            allowed = allowed_compressions(codec)
            for compression in settings.compressions:
                if compression not in allowed:
                    _skip(
                        skipped,
                        encoding,
                        compression,
                        f"{codec.transport} does not offer {compression}",
                    )
                    continue
                try:
                    row = measure(
                        encoding, codec, requests, responses, compression, settings, batch_size
                    )
                except WireError as exc:
                    _skip(skipped, encoding, compression, str(exc))
                else:
                    rows.append(row)
    if not rows:
        reasons = "; ".join(
            f"{s['encoding']} {s['compression']}: {s['reason']}" for s in skipped[:3]
        )
        raise UsageError(f"no encoding and compression pair could be measured ({reasons})")
    what_if = {
        "shared_context": shared_context_whatif(
            signature, columns, requests_by_batch, codecs, settings.group_by
        ),
        "short_names": short_names_whatif(requests_by_batch, codecs),
    }
    return PayloadReport(
        rows=rows, what_if=what_if, link_bits_per_s=settings.link_bits_per_s, skipped=skipped
    )


def _skip(skipped: list[dict[str, str]], encoding: str, compression: str, reason: str) -> None:
    entry = {"encoding": encoding, "compression": compression, "reason": reason}
    if entry not in skipped:
        skipped.append(entry)

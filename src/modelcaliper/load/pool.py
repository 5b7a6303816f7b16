"""The request pool: model requests encoded and compressed once, before the clock starts.

A pool holds *units*: one prepared request each without fan-out, or the ceil(K / B) prepared
requests of one query of K candidates (the last one smaller) with fan-out. The driver reuses
units round-robin — unit ``g`` of the schedule sends ``pool.unit(g)`` — so the bytes on the
wire cost nothing during the run. The pool stops growing at ``pool_mb`` of bodies (at least
one unit is always kept), and reports how long building it took.

HTTP units carry the codec's URL path and headers, with ``Content-Encoding`` when the body is
compressed. gRPC units carry the full method path and leave the body uncompressed: gRPC
compresses each call itself (``PreparedRequest.compression``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelcaliper.errors import DataError, UsageError
from modelcaliper.load.spec import query_rows
from modelcaliper.load.transport import PreparedRequest
from modelcaliper.signature import Signature
from modelcaliper.wire import ENCODINGS, Codec, InferRequest, get_codec
from modelcaliper.wire.compression import compress, parse_compression
from modelcaliper.wire.grpc_methods import TFS_PREDICT, V2_MODEL_INFER, grpc_compression
from modelcaliper.workload.requests import build_requests

__all__ = [
    "DEFAULT_POOL_MB",
    "GRPC_METHODS",
    "RequestPool",
    "build_pool",
    "grpc_wire_bytes",
    "prepare_request",
    "unit_requests",
]

DEFAULT_POOL_MB = 64.0
"""Default cap on the encoded bodies a pool holds, in MiB."""

_MIB = 1024 * 1024

GRPC_METHODS = {"tfserving-grpc": TFS_PREDICT, "v2-grpc": V2_MODEL_INFER}
"""The gRPC method each gRPC encoding calls."""


@dataclass(frozen=True)
class RequestPool:
    """Prepared units reused round-robin, and what building them cost."""

    units: tuple[tuple[PreparedRequest, ...], ...]
    encoding: str
    compression: str
    transport: str
    build_s: float
    size_bytes: int

    def __post_init__(self) -> None:
        if not self.units or any(not unit for unit in self.units):
            raise UsageError("a request pool needs at least one unit of at least one request")

    def unit(self, index: int) -> tuple[PreparedRequest, ...]:
        """The prepared requests of schedule unit ``index`` (round-robin over the pool)."""
        return self.units[index % len(self.units)]

    @property
    def request_count(self) -> int:
        """Prepared requests in the pool."""
        return sum(len(unit) for unit in self.units)

    @property
    def mean_request_bytes(self) -> float:
        """Mean bytes one prepared request puts on the wire (its body; for gRPC, the message
        after the per-call compression). ``size_bytes`` is the memory the bodies take."""
        return sum(r.wire_bytes or len(r.body) for unit in self.units
                   for r in unit) / self.request_count

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: encoding, compression, sizes and build time."""
        return {"encoding": self.encoding, "compression": self.compression,
                "transport": self.transport, "units": len(self.units),
                "requests": self.request_count, "size_bytes": self.size_bytes,
                "mean_request_bytes": self.mean_request_bytes, "build_s": self.build_s}


def _transport_of(codec: Codec) -> str:
    return "grpc" if codec.transport == "grpc" else "http"


def grpc_wire_bytes(body: bytes, compression: str) -> int:
    """The size of ``body`` as a gRPC call with this per-call compression sends it: gRPC core
    compresses each message with zlib at its default level (gzip or zlib format) and sends it
    uncompressed when that would not make it smaller. Computed once per pooled request."""
    if compression == "none":
        return len(body)
    return min(len(compress(body, compression)), len(body))  # type: ignore[arg-type]


def prepare_request(codec: Codec, request: InferRequest, compression: str = "none",
                    level: int | None = None, pool_index: int = 0) -> PreparedRequest:
    """One request encoded (and for HTTP compressed) the way ``codec``'s clients send it."""
    encoded = codec.encode_request(request)
    rows = request.batch_size
    if _transport_of(codec) == "grpc":
        grpc_compression(compression)  # refuses zstd with a one-line message
        method = GRPC_METHODS.get(codec.name)
        if method is None:
            raise UsageError(f"encoding '{codec.name}' has no known gRPC method")
        return PreparedRequest(method, encoded.body, tuple(encoded.headers), rows, compression,
                               "POST", pool_index, grpc_wire_bytes(encoded.body, compression))
    headers = tuple(encoded.headers)
    body = encoded.body
    if compression != "none":
        body = compress(body, compression, level)  # type: ignore[arg-type]
        headers = headers + (("content-encoding", compression),)
    path = codec.path(request)  # type: ignore[attr-defined]
    return PreparedRequest(path, body, headers, rows, compression, "POST", pool_index)


def build_pool(units: Iterable[Sequence[InferRequest]], encoding: str,
               compression: str = "none", level: int | None = None,
               pool_mb: float = DEFAULT_POOL_MB) -> RequestPool:
    """Encode units of requests until they are used up or their bodies pass ``pool_mb`` MiB."""
    if encoding not in ENCODINGS:
        raise UsageError(f"unknown encoding '{encoding}'; choose one of: {', '.join(ENCODINGS)}")
    if not pool_mb > 0:
        raise UsageError(f"the pool size must be > 0 MiB, got {pool_mb}")
    compression = parse_compression(compression)
    if level is not None:
        compress(b"", compression, level)  # validate the level once, with the codec's range
    codec = get_codec(encoding)
    started = time.perf_counter()
    prepared: list[tuple[PreparedRequest, ...]] = []
    size_bytes = 0
    budget_bytes = pool_mb * _MIB
    index = 0
    for requests in units:
        unit = []
        for request in requests:
            unit.append(prepare_request(codec, request, compression, level, index))
            index += 1
        if not unit:
            continue
        unit_bytes = sum(len(r.body) for r in unit)
        if prepared and size_bytes + unit_bytes > budget_bytes:
            break
        prepared.append(tuple(unit))
        size_bytes += unit_bytes
    if not prepared:
        raise DataError("no requests to build a pool from: the data produced no rows")
    return RequestPool(tuple(prepared), encoding, compression, _transport_of(codec),
                       time.perf_counter() - started, size_bytes)


def unit_requests(columns: Mapping[str, np.ndarray], signature: Signature, *, batch_size: int,
                  candidates: int = 0, model_name: str = "model", group_by: str | None = None,
                  max_units: int | None = None) -> Iterator[list[InferRequest]]:
    """Units of model requests from named columns: single requests, or queries of K rows.

    Without fan-out each unit is one request of up to ``batch_size`` rows (``group_by`` keeps
    groups apart). With ``candidates`` = K each unit is a query: K consecutive rows split into
    ceil(K / batch_size) requests, the last one smaller; the data must hold at least K rows.
    """
    num_rows = len(next(iter(columns.values()))) if columns else 0
    if not candidates:
        for request in build_requests(columns, signature, batch_size, group_by=group_by,
                                      model_name=model_name, max_requests=max_units):
            yield [request]
        return
    if group_by is not None:
        raise UsageError("--group-by and --candidates both decide which rows form a query; "
                         "use one of them")
    if num_rows < candidates:
        raise UsageError(f"--candidates {candidates} needs at least {candidates} rows of data "
                         f"per query, the data has {num_rows}")
    expected = len(query_rows(candidates, batch_size))
    queries = num_rows // candidates
    if max_units is not None:
        queries = min(queries, max_units)
    for q in range(queries):
        window = {name: values[q * candidates:(q + 1) * candidates]
                  for name, values in columns.items()}
        requests = build_requests(window, signature, batch_size, model_name=model_name)
        if len(requests) != expected:
            raise DataError(f"query {q}: {candidates} rows made {len(requests)} requests "
                            f"instead of {expected}")
        yield requests

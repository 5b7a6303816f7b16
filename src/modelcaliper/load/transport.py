"""What the load driver needs from a transport: send prepared bytes, report what happened.

A transport owns its connections (an HTTP/1.1 keep-alive pool, a pool of gRPC channels) and
sends ``PreparedRequest``s built before the run. It never raises for a failed request: every
send ends as an ``Outcome`` with a status and, on failure, an error kind — failures are data.
Exceptions are for a target that cannot be reached at all before the run (``TargetError``
from ``start``) and for programming errors.

Timestamps are absolute ``time.perf_counter_ns()`` values; the driver turns them into
offsets from the run's start. ``sent_ns`` is taken just before the first byte is handed to
the socket (or to gRPC), ``written_ns`` when the whole request has been handed over,
``first_byte_ns`` when the first response byte arrived (HTTP) or the response headers did
(gRPC), ``done_ns`` when the response was complete.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Outcome", "PreparedRequest", "Status", "Transport"]


class Status(enum.IntEnum):
    """How one request ended."""

    OK = 0
    ERROR = 1  # transport or server error (errors exclude timeouts)
    TIMEOUT = 2  # no complete answer within the per-request timeout
    DROPPED = 3  # never sent: the client queue was full (--on-overload drop)
    CANCELLED = 4  # abandoned when its query's deadline passed (--on-deadline cancel)
    MODEL_ERROR = 5  # answered, but the answer failed a model check (NaN, shape, mismatch)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """One pre-encoded model request, reusable any number of times.

    HTTP: ``path`` is the URL path, ``headers`` the protocol headers (content type,
    ``Inference-Header-Content-Length``, ``Content-Encoding``...). gRPC: ``path`` is the full
    method (``/inference.GRPCInferenceService/ModelInfer``), ``headers`` extra metadata, and
    ``compression`` the per-call compression (``none``, ``gzip``, ``deflate``), and
    ``wire_bytes`` the size of the message as gRPC sends it after that compression (0: the
    body's size; HTTP bodies are compressed already).
    """

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    rows: int = 1
    compression: str = "none"
    method: str = "POST"
    pool_index: int = 0
    wire_bytes: int = 0


@dataclass(slots=True)
class Outcome:
    """What happened to one send; see the module docstring for the timestamps."""

    status: Status
    sent_ns: int = 0
    written_ns: int = 0
    first_byte_ns: int = 0
    done_ns: int = 0
    response_bytes: int = 0
    request_bytes: int = 0
    code: str = ""  # HTTP status ("200") or gRPC code name ("OK", "UNAVAILABLE")
    error_kind: str = ""  # e.g. "connect", "reset", "http_503", "grpc_UNAVAILABLE", "timeout"
    error_message: str = ""
    server_timing_ms: dict[str, float] = field(default_factory=dict)
    body: bytes | None = None  # the response body, kept only when the driver asks for it
    headers: dict[str, str] | None = None  # response headers (lower-case names), kept with body


@runtime_checkable
class Transport(Protocol):
    """Sends prepared requests to one target over one protocol."""

    async def start(self) -> None:
        """Open connections; raise ``TargetError`` naming the address if it is unreachable."""
        ...

    async def send(
        self,
        request: PreparedRequest,
        *,
        request_id: str,
        traceparent: str,
        timeout_s: float,
        keep_body: bool = False,
    ) -> Outcome:
        """Send one request and wait for its answer (or the timeout); never raises for failures."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...

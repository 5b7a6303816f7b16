"""The gRPC transport: pre-serialized unary calls over a round-robin pool of ``grpc.aio`` channels.

Requests are bytes encoded before the run, so every call uses identity serializers
(``wire.grpc_methods.unary_bytes_call``) cached per channel and method path: gRPC never
serializes, and the Python work per call is building one metadata tuple and two awaits.

Each channel has its own connection (``grpc.use_local_subchannel_pool``): without it, channels
with equal options share one subchannel and ``channels=N`` would still be one HTTP/2 connection.
Retries are off (each send is one attempt, and gRPC does not buffer a copy of the message for
replay) and proxies from the environment are ignored (load must reach the target directly).

Timestamps (``time.perf_counter_ns``): ``sent_ns`` just before the call is handed to gRPC,
``written_ns`` when that hand-over returns (gRPC does not report when the message left the
socket, so this is the end of the client-side Python work, not a wire event),
``first_byte_ns`` when the response's initial metadata (its HTTP/2 headers) arrived, and
``done_ns`` when the response message and status were complete. A unary server sends its
headers together with the response unless it flushes them early, so ``first_byte_ns`` is
usually within microseconds of ``done_ns``. ``request_bytes`` is the message as it goes on the
wire: after the per-call compression (``PreparedRequest.wire_bytes``, computed when the pool is
built with the zlib settings gRPC core uses); ``response_bytes`` the message after
decompression.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import grpc
import grpc.aio

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.wire.grpc_methods import grpc_compression, unary_bytes_call

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "GrpcTransport", "parse_grpc_target"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message sent or received unless told otherwise (gRPC's own default is 4 MiB)."""

_TIMING_KEY = "server-timing"
_SCHEMES = ("grpc://", "http://")


def parse_grpc_target(target: str) -> str:
    """The ``host:port`` gRPC dials for ``target`` (``host:port``, ``grpc://host:port``)."""
    text = target.strip()
    lowered = text.lower()
    if lowered.startswith(("grpcs://", "https://")):
        raise UsageError(f"gRPC target '{target}': TLS is not supported yet; use host:port")
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme):]
            break
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"gRPC target '{target}' must look like 127.0.0.1:8500")
    return text


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """The channel arguments of every channel in the pool (see the module docstring)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.so_reuseport", 0),
        ("grpc.enable_retries", 0),
        ("grpc.enable_http_proxy", 0),
    ]


def _timing(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, float]:
    """The ``server-timing`` phases found in trailing metadata, in milliseconds."""
    if not metadata:
        return {}
    values = [v if isinstance(v, str) else v.decode("latin-1")
              for k, v in metadata if k == _TIMING_KEY]
    return parse_server_timing(values) if values else {}


def _one_line(text: str | None) -> str:
    """``text`` with line breaks folded, so an error message stays one line."""
    return " ".join((text or "").split())


class GrpcTransport:
    """Sends prepared unary calls to one gRPC target over ``channels`` round-robin channels."""

    enforces_timeout = True
    """Every send ends by ``timeout_s`` on its own; the driver needs no guard of its own."""

    def __init__(
        self,
        target: str,
        *,
        channels: int = 1,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise UsageError(f"gRPC channels must be an integer ≥ 1, got {channels!r}")
        if max_message_bytes < 1:
            raise UsageError(f"max_message_bytes must be ≥ 1, got {max_message_bytes}")
        if not connect_timeout_s > 0:
            raise UsageError(f"connect_timeout_s must be > 0, got {connect_timeout_s}")
        self.target = parse_grpc_target(target)
        self.channel_count = channels
        self.max_message_bytes = max_message_bytes
        self.connect_timeout_s = connect_timeout_s
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[dict[str, grpc.aio.UnaryUnaryMultiCallable]] = []
        self._compressions: dict[str, grpc.Compression] = {}
        self._metadata: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        self._next = 0

    async def start(self) -> None:
        """Open the channels and wait until each is connected; ``TargetError`` if one cannot."""
        if self._channels:
            return
        options = _channel_options(self.max_message_bytes)
        self._channels = [grpc.aio.insecure_channel(self.target, options=options)
                          for _ in range(self.channel_count)]
        self._calls = [{} for _ in self._channels]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self._connect(c) for c in self._channels)),
                self.connect_timeout_s)
        except TimeoutError:
            await self.close()
            raise TargetError(f"cannot connect to {self.target}: no gRPC server answered within "
                              f"{self.connect_timeout_s:g}s") from None
        except TargetError:
            await self.close()
            raise

    async def _connect(self, channel: grpc.aio.Channel) -> None:
        """Wait for ``channel`` to be READY; a failed first attempt is reported at once."""
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            # TRANSIENT_FAILURE after the first attempt means refused, reset or not speaking
            # HTTP/2: gRPC would keep retrying with backoff, but before a run that is an error.
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                raise TargetError(f"cannot connect to {self.target}: connection failed "
                                  "(refused, or not a gRPC server)")
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                raise TargetError(f"cannot connect to {self.target}: the channel was shut down")
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        """Close every channel; calls still in flight end as CANCELLED."""
        channels, self._channels, self._calls = self._channels, [], []
        for channel in channels:
            await channel.close()

    def _compression(self, name: str) -> grpc.Compression:
        """The ``grpc.Compression`` of a compression name, looked up once per name."""
        found = self._compressions.get(name)
        if found is None:
            found = self._compressions[name] = grpc_compression(name)
        return found

    def _extra_metadata(self, headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """``headers`` as gRPC metadata (lower-case keys, as gRPC requires), built once each."""
        found = self._metadata.get(headers)
        if found is None:
            found = self._metadata[headers] = tuple((k.lower(), v) for k, v in headers)
        return found

    async def send(self, request: PreparedRequest, *, request_id: str, traceparent: str,
                   timeout_s: float, keep_body: bool = False) -> Outcome:
        """Make one unary call and wait for its answer or deadline; never raises for failures."""
        if not self._channels:
            raise RuntimeError("GrpcTransport.send called before start() or after close()")
        index = self._next
        self._next = index + 1 if index + 1 < len(self._channels) else 0
        calls = self._calls[index]
        method = calls.get(request.path)
        if method is None:
            method = calls[request.path] = unary_bytes_call(self._channels[index], request.path)
        metadata: tuple[tuple[str, str], ...] = (
            ("x-request-id", request_id), ("traceparent", traceparent))
        if request.headers:
            metadata += self._extra_metadata(request.headers)
        compression = self._compression(request.compression)
        timeout = timeout_s if timeout_s > 0 else None
        request_bytes = request.wire_bytes or len(request.body)

        sent_ns = time.perf_counter_ns()
        call = method(request.body, timeout=timeout, metadata=metadata, compression=compression)
        written_ns = time.perf_counter_ns()
        first_byte_ns = 0
        try:
            await call.initial_metadata()
            first_byte_ns = time.perf_counter_ns()
            response = await call
            done_ns = time.perf_counter_ns()
        except grpc.aio.AioRpcError as error:
            done_ns = time.perf_counter_ns()
            code = error.code()
            timed_out = code is grpc.StatusCode.DEADLINE_EXCEEDED
            return Outcome(
                Status.TIMEOUT if timed_out else Status.ERROR,
                sent_ns=sent_ns, written_ns=written_ns, first_byte_ns=first_byte_ns,
                done_ns=done_ns, request_bytes=request_bytes, code=code.name,
                error_kind="timeout" if timed_out else f"grpc_{code.name}",
                error_message=_one_line(error.details()),
                server_timing_ms=_timing(error.trailing_metadata()),
            )
        except asyncio.CancelledError:
            call.cancel()  # the driver gave up on this request (a query deadline): so do we
            raise
        trailing = await call.trailing_metadata()
        return Outcome(
            Status.OK, sent_ns=sent_ns, written_ns=written_ns, first_byte_ns=first_byte_ns,
            done_ns=done_ns, response_bytes=len(response), request_bytes=request_bytes,
            code="OK", server_timing_ms=_timing(trailing),
            body=response if keep_body else None,
        )

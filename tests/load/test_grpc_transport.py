"""``GrpcTransport`` against real gRPC servers on 127.0.0.1.

A scripted server built with ``grpc_methods.bytes_service_handler`` answers TF Serving's Predict
and the v2 ModelInfer by echoing the decoded inputs (through our codecs), and a test service
sleeps, fails with chosen codes or returns oversized answers. Each call's metadata and peer are
captured on the server side. The embedded model server (``caliper serve-model``, a separate
process) is called over both protocols at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest

from modelcaliper.errors import TargetError, UsageError
from modelcaliper.load.grpc import GrpcTransport, parse_grpc_target
from modelcaliper.load.pool import grpc_wire_bytes
from modelcaliper.load.transport import Outcome, PreparedRequest, Status, Transport
from modelcaliper.testing import GroundTruthServer
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tensors import InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec
from tests.models import build_onnx_mlp, mlp_inputs

TFS = TFServingGrpcCodec()
V2 = V2GrpcCodec()
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SERVICE = "caliper.test.Script"
SLEEP, FAIL, BIG = (gm.method_path(SERVICE, m) for m in ("Sleep", "Fail", "Big"))
TIMING = "queue;dur=0.250, compute;dur=1.500, total;dur=2.000"
INPUTS = {
    "dense": np.arange(12, dtype=np.float32).reshape(3, 4),
    "ids": np.array([[b"a"], [b"bc"], [b""]], dtype=object),
}


def run(coro):
    """Run one scenario on a fresh event loop."""
    return asyncio.run(coro)


class Script:
    """Handlers of the scripted server and what they saw."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.peers: list[str] = []
        self.cancelled = asyncio.Event()

    def _seen(self, context: grpc.aio.ServicerContext) -> None:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        self.peers.append(context.peer())

    async def predict(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen(context)
        request = TFS.decode_request(body)
        context.set_trailing_metadata((("server-timing", TIMING),))
        return TFS.encode_response(InferResponse(request.inputs, model_name="m"), request).body

    async def infer(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen(context)
        request = V2.decode_request(body)
        context.set_trailing_metadata((("server-timing", TIMING),))
        return V2.encode_response(InferResponse(request.inputs, model_name="m"), request).body

    async def sleep(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen(context)
        try:
            await asyncio.sleep(float(body.decode()))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"slept"

    async def fail(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self._seen(context)
        code, _, message = body.decode().partition(":")
        if code == "RAISE":
            raise RuntimeError(message)
        await context.abort(grpc.StatusCode[code], message,
                            trailing_metadata=(("server-timing", "total;dur=0.5"),))
        return b""

    async def big(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return bytes(int(body.decode()))

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """The generic handlers of the three services."""
        return (
            gm.bytes_service_handler(gm.TFS_PREDICTION_SERVICE, {"Predict": self.predict}),
            gm.bytes_service_handler(gm.V2_SERVICE, {"ModelInfer": self.infer}),
            gm.bytes_service_handler(SERVICE, {"Sleep": self.sleep, "Fail": self.fail,
                                               "Big": self.big}),
        )


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[str, Script, grpc.aio.Server]]:
    """The scripted server on a free 127.0.0.1 port: its address, script and server."""
    script = Script()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(script.handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", script, server
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def transport(address: str, **options) -> AsyncIterator[GrpcTransport]:
    """A started transport to ``address``, closed afterwards."""
    sender = GrpcTransport(address, **options)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.close()


async def send(sender: GrpcTransport, request: PreparedRequest, *, request_id: str = "r-1",
               timeout_s: float = 10.0, keep_body: bool = False) -> Outcome:
    """One send with the fixed traceparent."""
    return await sender.send(request, request_id=request_id, traceparent=TRACEPARENT,
                             timeout_s=timeout_s, keep_body=keep_body)


def prepared(path: str, body: bytes | str, **kw) -> PreparedRequest:
    """A prepared gRPC request for ``path``."""
    return PreparedRequest(path, body.encode() if isinstance(body, str) else body, **kw)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("target", "dialled"),
    [
        ("127.0.0.1:8500", "127.0.0.1:8500"),  # the usual form
        ("grpc://127.0.0.1:8500", "127.0.0.1:8500"),  # with the scheme caliper prints
        ("localhost:9000/", "localhost:9000"),  # a trailing slash is forgiven
        ("[::1]:8500", "[::1]:8500"),  # IPv6 literal
    ],
)
def test_targets(target, dialled):
    assert parse_grpc_target(target) == dialled


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("grpcs://host:443", "TLS is not supported"),  # TLS
        ("127.0.0.1", "must look like"),  # no port
        ("127.0.0.1:http", "must look like"),  # port not a number
        ("127.0.0.1:70000", "must look like"),  # port out of range
    ],
)
def test_bad_targets_are_usage_errors(target, message):
    with pytest.raises(UsageError, match=message):
        GrpcTransport(target)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"channels": 0}, "channels must be an integer ≥ 1, got 0"),  # no channel at all
        ({"channels": 1.5}, "channels must be an integer"),  # not an integer
        ({"max_message_bytes": 0}, "max_message_bytes must be ≥ 1"),  # nothing fits
        ({"connect_timeout_s": 0}, "connect_timeout_s must be > 0"),  # cannot wait
    ],
)
def test_bad_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        GrpcTransport("127.0.0.1:8500", **options)


def test_is_a_transport():
    assert isinstance(GrpcTransport("127.0.0.1:8500"), Transport)


def test_send_before_start_is_a_programming_error():
    with pytest.raises(RuntimeError, match="before start"):
        run(send(GrpcTransport("127.0.0.1:8500"), prepared(SLEEP, "0")))


# ---------------------------------------------------------------- inference calls


@pytest.mark.parametrize(
    ("codec", "path"),
    [
        (TFS, gm.TFS_PREDICT),  # TF Serving's PredictionService/Predict
        (V2, gm.V2_MODEL_INFER),  # the v2 GRPCInferenceService/ModelInfer
    ],
)
def test_inference_round_trip(codec, path):
    body = codec.encode_request(InferRequest(INPUTS, model_name="m")).body
    request = prepared(path, body, headers=(("X-Tenant", "blue"),), rows=3)

    async def scenario():
        async with serving() as (address, script, _), transport(address) as sender:
            kept = await send(sender, request, request_id="id-7", keep_body=True)
            dropped = await send(sender, request)
            return kept, dropped, script.metadata

    kept, dropped, metadata = run(scenario())
    assert kept.status is Status.OK and kept.code == "OK" and kept.error_kind == ""
    outputs = codec.decode_response(kept.body).outputs
    assert set(outputs) == set(INPUTS)
    assert outputs["ids"].tolist() == INPUTS["ids"].tolist()
    np.testing.assert_array_equal(outputs["dense"], INPUTS["dense"])
    assert kept.request_bytes == len(body) and kept.response_bytes == len(kept.body)
    assert 0 < kept.sent_ns <= kept.written_ns <= kept.first_byte_ns <= kept.done_ns
    assert kept.server_timing_ms == {"queue": 0.25, "compute": 1.5, "total": 2.0}
    assert dropped.status is Status.OK and dropped.body is None
    assert dropped.response_bytes == kept.response_bytes
    sent = metadata[0]
    assert sent["x-request-id"] == "id-7" and sent["traceparent"] == TRACEPARENT
    assert sent["x-tenant"] == "blue"  # extra headers travel as lower-case metadata
    assert metadata[1]["x-request-id"] == "r-1"


class Relay:
    """A TCP relay on 127.0.0.1 counting the bytes clients send through it."""

    def __init__(self) -> None:
        self.upstream_bytes = 0

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    count: bool) -> None:
        try:
            while data := await src.read(65536):
                self.upstream_bytes += len(data) if count else 0
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    @contextlib.asynccontextmanager
    async def to(self, address: str) -> AsyncIterator[str]:
        """Relay to ``address`` within the block; yields the relay's own address."""
        host, port = address.rsplit(":", 1)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            await asyncio.gather(self._pipe(reader, up_writer, True),
                                 self._pipe(up_reader, writer, False))

        relay = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            yield f"127.0.0.1:{relay.sockets[0].getsockname()[1]}"
        finally:
            relay.close()


def test_per_call_compression_happens_on_the_wire():
    body = TFS.encode_request(InferRequest({"z": np.zeros((500, 500), np.float32)})).body

    async def scenario():
        relay = Relay()
        async with serving() as (address, _, _), relay.to(address) as via, \
                transport(via) as sender:
            sizes = {}
            for name in ("none", "gzip", "deflate", "gzip"):  # the second gzip: cached lookup
                before = relay.upstream_bytes
                outcome = await send(sender, prepared(gm.TFS_PREDICT, body, compression=name))
                assert outcome.status is Status.OK and outcome.request_bytes == len(body)
                sizes[name] = relay.upstream_bytes - before
            return sizes

    sizes = run(scenario())
    assert sizes["none"] > len(body) > 20 * sizes["gzip"]
    assert len(body) > 20 * sizes["deflate"]


def test_unknown_compression_is_a_usage_error():
    async def scenario():
        async with serving() as (address, _, _), transport(address) as sender:
            await send(sender, prepared(SLEEP, "0", compression="zstd"))

    with pytest.raises(UsageError, match="'zstd'"):
        run(scenario())


# ---------------------------------------------------------------- failures are data


def test_deadline_exceeded_is_a_timeout():
    async def scenario():
        async with serving() as (address, script, _), transport(address) as sender:
            outcome = await send(sender, prepared(SLEEP, "2"), timeout_s=0.1)
            await asyncio.wait_for(script.cancelled.wait(), 5)  # the server was told, too
            return outcome

    outcome = run(scenario())
    assert outcome.status is Status.TIMEOUT and outcome.error_kind == "timeout"
    assert outcome.code == "DEADLINE_EXCEEDED"
    assert 0.1 <= (outcome.done_ns - outcome.sent_ns) / 1e9 < 1.0


@pytest.mark.parametrize(
    ("script", "kind", "message"),
    [
        ("INVALID_ARGUMENT:tensor 'x': expected FP32", "grpc_INVALID_ARGUMENT",
         "tensor 'x': expected FP32"),  # a malformed request, as our server reports it
        ("RESOURCE_EXHAUSTED:queue full", "grpc_RESOURCE_EXHAUSTED", "queue full"),  # overload
        ("UNAVAILABLE:model loading", "grpc_UNAVAILABLE", "model loading"),  # not ready
        ("NOT_FOUND:no model 'm'", "grpc_NOT_FOUND", "no model 'm'"),  # wrong model name
        ("INTERNAL:line one\nline two", "grpc_INTERNAL", "line one line two"),  # kept one line
        ("RAISE:boom", "grpc_UNKNOWN", "Unexpected <class 'RuntimeError'>: boom"),  # a crash
    ],
)
def test_server_errors_become_error_outcomes(script, kind, message):
    async def scenario():
        async with serving() as (address, _, _), transport(address) as sender:
            return await send(sender, prepared(FAIL, script))

    outcome = run(scenario())
    assert outcome.status is Status.ERROR and outcome.error_kind == kind
    assert outcome.code == kind.removeprefix("grpc_") and outcome.error_message == message
    assert outcome.done_ns >= outcome.sent_ns > 0 and outcome.response_bytes == 0
    if not script.startswith("RAISE"):
        assert outcome.server_timing_ms == {"total": 0.5}  # trailers of a failed call too


def test_unknown_method_and_oversized_answer():
    async def scenario():
        async with serving() as (address, _, _), \
                transport(address, max_message_bytes=1000) as sender:
            missing = await send(sender, prepared("/caliper.test.Script/Nope", b""))
            small = await send(sender, prepared(BIG, "900"))
            big = await send(sender, prepared(BIG, "5000"))
            return missing, small, big

    missing, small, big = run(scenario())
    assert missing.error_kind == "grpc_UNIMPLEMENTED"
    assert small.status is Status.OK and small.response_bytes == 900
    assert big.status is Status.ERROR and big.error_kind == "grpc_RESOURCE_EXHAUSTED"


def test_a_server_that_goes_away_gives_unavailable():
    async def scenario():
        async with serving() as (address, _, server), transport(address) as sender:
            first = await send(sender, prepared(SLEEP, "0"))
            await server.stop(None)
            return first, await send(sender, prepared(SLEEP, "0"), timeout_s=5)

    first, after = run(scenario())
    assert first.status is Status.OK
    assert after.status is Status.ERROR and after.error_kind == "grpc_UNAVAILABLE"


def test_cancelling_a_send_cancels_the_call():
    async def scenario():
        async with serving() as (address, script, _), transport(address) as sender:
            task = asyncio.ensure_future(send(sender, prepared(SLEEP, "5")))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(script.cancelled.wait(), 5)
            return await send(sender, prepared(SLEEP, "0"))  # the channel is still usable

    assert run(scenario()).status is Status.OK


# ---------------------------------------------------------------- connecting


def test_refused_connection_is_a_target_error_naming_the_address():
    with GroundTruthServer() as http_only:  # a port we know, then closed
        port = http_only.port
    started = time.perf_counter()
    with pytest.raises(TargetError, match=f"cannot connect to 127.0.0.1:{port}: connection"):
        run(GrpcTransport(f"127.0.0.1:{port}").start())
    assert time.perf_counter() - started < 3.0  # fails fast, does not wait out the timeout


def test_a_server_that_is_not_grpc_is_a_target_error():
    with GroundTruthServer() as http_only:
        with pytest.raises(TargetError, match=f"127.0.0.1:{http_only.port}"):
            run(GrpcTransport(f"127.0.0.1:{http_only.port}", connect_timeout_s=3).start())


def test_a_silent_listener_times_out_at_start():
    async def scenario():
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            await GrpcTransport(f"127.0.0.1:{port}", connect_timeout_s=0.5).start()
        finally:
            silent.close()

    with pytest.raises(TargetError, match="no gRPC server answered within 0.5s"):
        run(scenario())


def test_channels_are_separate_connections_used_round_robin():
    async def scenario():
        async with serving() as (address, script, _), \
                transport(address, channels=3) as sender:
            for i in range(9):
                assert (await send(sender, prepared(SLEEP, "0"), request_id=str(i))).status \
                    is Status.OK
            return script.peers

    peers = run(scenario())
    assert len(set(peers)) == 3  # three client ports: three TCP connections
    assert peers[:3] * 3 == peers  # taken in turn


def test_concurrent_sends():
    async def scenario():
        async with serving() as (address, script, _), \
                transport(address, channels=2) as sender:
            outcomes = await asyncio.gather(*(
                send(sender, prepared(SLEEP, "0.05"), request_id=f"c{i}") for i in range(200)))
            return outcomes, script.metadata

    outcomes, metadata = run(scenario())
    assert all(o.status is Status.OK for o in outcomes)
    assert {m["x-request-id"] for m in metadata} == {f"c{i}" for i in range(200)}


def test_works_on_uvloop():
    uvloop = pytest.importorskip("uvloop")

    async def scenario():
        async with serving() as (address, _, _), transport(address) as sender:
            return await send(sender, prepared(SLEEP, "0.01"))

    outcome = uvloop.run(scenario())
    assert outcome.status is Status.OK and outcome.done_ns - outcome.sent_ns >= 10_000_000


# ---------------------------------------------------------------- the embedded model server


@pytest.fixture(scope="module")
def model_server(tmp_path_factory) -> Iterator[dict]:
    """``caliper serve-model`` on a small ONNX MLP, in its own process; its ready document."""
    workdir = tmp_path_factory.mktemp("grpc-transport")
    model = build_onnx_mlp(workdir / "mlp.onnx", n_inputs=16, hidden=(8,))
    ready = workdir / "ready.json"
    log = (workdir / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelcaliper.cli.main", "serve-model", str(model), "--host",
         "127.0.0.1", "--http-port", "0", "--grpc-port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline_s = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline_s:
            proc.kill()
            pytest.fail(f"serve-model did not start: {Path(log.name).read_text()}")
        time.sleep(0.05)
    yield json.loads(ready.read_text())
    proc.terminate()
    proc.wait(60)
    log.close()


@pytest.mark.parametrize(
    ("codec", "path"),
    [
        (TFS, gm.TFS_PREDICT),  # TF Serving Predict
        (V2, gm.V2_MODEL_INFER),  # v2 ModelInfer
    ],
)
def test_embedded_model_server(model_server, codec, path):
    inputs = mlp_inputs(4, n_inputs=16)
    body = codec.encode_request(InferRequest(inputs, model_name=model_server["model_name"])).body

    async def scenario():
        async with transport(f"127.0.0.1:{model_server['grpc_port']}") as sender:
            ok = await send(sender, prepared(path, body, compression="gzip", rows=4),
                            keep_body=True)
            wrong = codec.encode_request(InferRequest(inputs, model_name="no-such-model")).body
            return ok, await send(sender, prepared(path, wrong))

    ok, missing = run(scenario())
    assert ok.status is Status.OK, ok.error_message
    (scores,) = codec.decode_response(ok.body).outputs.values()
    assert scores.shape[0] == 4 and np.all(np.isfinite(scores))
    assert {"decode", "compute", "total"} <= set(ok.server_timing_ms)
    assert 0 < ok.server_timing_ms["total"] * 1e6 <= ok.done_ns - ok.sent_ns
    assert missing.status is Status.ERROR and missing.error_kind == "grpc_NOT_FOUND"
    assert "no-such-model" in missing.error_message


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_recorded_request_bytes_are_the_compressed_message_on_the_wire(compression):
    # Demo-like features: noisy floats compress a little, repeated categories a lot.
    rng = np.random.default_rng(3)
    features = InferRequest({"x": rng.normal(size=(25, 300)).astype(np.float32).round(2),
                             "c": np.array([[f"cat_{i % 7}"] * 20 for i in range(25)],
                                           dtype=object)})
    body = TFS.encode_request(features).body
    wire = grpc_wire_bytes(body, compression)
    assert wire < len(body)

    async def scenario():
        relay = Relay()
        async with serving() as (address, _, _), relay.to(address) as via, \
                transport(via) as sender:
            sizes, recorded = {}, {}
            for name, size in (("none", len(body)), (compression, wire)) * 2:  # 2nd: warm HPACK
                before = relay.upstream_bytes
                outcome = await send(sender, prepared(gm.TFS_PREDICT, body, compression=name,
                                                      wire_bytes=size))
                assert outcome.status is Status.OK
                sizes[name], recorded[name] = relay.upstream_bytes - before, outcome.request_bytes
            return sizes, recorded

    sizes, recorded = run(scenario())
    assert recorded == {"none": len(body), compression: wire}
    # What gRPC really saved on the socket is what the recorded sizes say it saved (HTTP/2
    # framing and the grpc-encoding header differ by a few dozen bytes).
    saved_on_wire, saved_recorded = sizes["none"] - sizes[compression], len(body) - wire
    assert abs(saved_on_wire - saved_recorded) <= 0.01 * len(body) + 100, (sizes, len(body), wire)

"""End-to-end gRPC calls on 127.0.0.1 through the bytes-only helpers of ``grpc_methods``.

A small echo server built with ``bytes_service_handler`` answers TF Serving's and the v2
protocol's methods; it is called with our pre-serialized bytes client and with the official
clients (TF Serving's generated stubs, tritonclient's asyncio client), gzip-compressed. A
byte-counting relay between them shows that the compression really happens on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc.aio as tritongrpc_aio
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2 as triton_pb2

from modelcaliper.errors import UsageError
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tensors import InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec
from tests.wire.grpc_samples import SIGNATURE, assert_same_tensor, triton_input

pytestmark = pytest.mark.interop

TFS = TFServingGrpcCodec()
V2 = V2GrpcCodec()


# ---------------------------------------------------------------- grpc_methods helpers


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (gm.TFS_PREDICT, "/tensorflow.serving.PredictionService/Predict"),
        (gm.TFS_GET_MODEL_METADATA, "/tensorflow.serving.PredictionService/GetModelMetadata"),
        (gm.TFS_GET_MODEL_STATUS, "/tensorflow.serving.ModelService/GetModelStatus"),
        (gm.V2_MODEL_INFER, "/inference.GRPCInferenceService/ModelInfer"),
        (gm.V2_MODEL_METADATA, "/inference.GRPCInferenceService/ModelMetadata"),
        (gm.V2_MODEL_READY, "/inference.GRPCInferenceService/ModelReady"),
        (gm.V2_SERVER_READY, "/inference.GRPCInferenceService/ServerReady"),
        (gm.V2_SERVER_LIVE, "/inference.GRPCInferenceService/ServerLive"),
        (gm.V2_SERVER_METADATA, "/inference.GRPCInferenceService/ServerMetadata"),
    ],
)
def test_method_paths_match_the_official_services(path, expected):
    assert path == expected
    service, method = gm.split_method(path)
    assert gm.method_path(service, method) == path


def test_method_paths_match_the_official_service_descriptors():
    tfs = predict_pb2.DESCRIPTOR.package  # "tensorflow.serving"
    assert gm.TFS_PREDICTION_SERVICE == f"{tfs}.PredictionService"
    service = triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert gm.V2_SERVICE == service.full_name
    for path in (gm.V2_MODEL_INFER, gm.V2_MODEL_METADATA, gm.V2_MODEL_READY, gm.V2_SERVER_READY,
                 gm.V2_SERVER_LIVE, gm.V2_SERVER_METADATA):
        assert gm.split_method(path)[1] in service.methods_by_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("none", grpc.Compression.NoCompression),
        ("identity", grpc.Compression.NoCompression),  # HTTP's name for none
        ("gzip", grpc.Compression.Gzip),
        (" Deflate ", grpc.Compression.Deflate),  # case and spaces do not matter
    ],
)
def test_grpc_compression_names(name, expected):
    assert gm.grpc_compression(name) is expected


@pytest.mark.parametrize("name", ["zstd", "br"])
def test_unsupported_grpc_compression_is_a_usage_error(name):
    with pytest.raises(UsageError, match=f"not '{name}'"):
        gm.grpc_compression(name)


def test_split_method_rejects_a_bare_name():
    with pytest.raises(UsageError, match="/package.Service/Method"):
        gm.split_method("Predict")


# ---------------------------------------------------------------- end to end over gRPC

BATCH = {
    "dense": np.random.default_rng(3).random((25, 300)).astype(np.float32),
    "categorical": np.array([[f"v{i}_{j}".encode() for j in range(20)] for i in range(25)], object),
    "flags": np.array([True, False]),
    "empty": np.zeros((0, 2), np.int64),
}


ZEROS = {"zeros": np.zeros((500, 500), np.float32)}  # 1 MB that gzip shrinks to ~1 KB


class EchoServer:
    """Answers Predict / ModelInfer with the request's inputs as outputs, and the metadata calls."""

    async def predict(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = TFS.decode_request(body)
        response = InferResponse(request.inputs, model_name=request.model_name, model_version="1")
        return TFS.encode_response(response, request).body

    async def tf_metadata(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        model, _ = tfmeta.decode_metadata_request(body)
        return tfmeta.encode_metadata_response(tfmeta.ModelRef(model.name, "1"), [SIGNATURE])

    async def tf_status(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        tfmeta.decode_status_request(body)
        return tfmeta.encode_status_response([tfmeta.VersionStatus(1, "AVAILABLE")])

    async def infer(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = V2.decode_request(body)
        response = InferResponse(request.inputs, model_name=request.model_name, model_version="1")
        return V2.encode_response(response, request).body

    async def ready(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return v2meta.encode_ready(True)

    async def v2_metadata(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name, _ = v2meta.decode_model_metadata_request(body)
        return v2meta.encode_model_metadata_response(name, SIGNATURE, ["1"], "caliper")

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """The generic handlers of the three services."""
        return (
            gm.bytes_service_handler(gm.TFS_PREDICTION_SERVICE, {
                "Predict": self.predict, "GetModelMetadata": self.tf_metadata}),
            gm.bytes_service_handler(gm.TFS_MODEL_SERVICE, {"GetModelStatus": self.tf_status}),
            gm.bytes_service_handler(gm.V2_SERVICE, {
                "ModelInfer": self.infer, "ServerLive": self.ready, "ServerReady": self.ready,
                "ModelReady": self.ready, "ModelMetadata": self.v2_metadata}),
        )


class Relay:
    """A TCP relay on 127.0.0.1 that counts the bytes clients send through it.

    gRPC hides the ``grpc-encoding`` header from handlers, so the bytes on the wire are how
    the tests see that a call really was compressed.
    """

    def __init__(self) -> None:
        self.upstream_bytes = 0

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool
    ) -> None:
        try:
            while data := await src.read(1 << 16):
                if count:
                    self.upstream_bytes += len(data)
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    @contextlib.asynccontextmanager
    async def to(self, target: str) -> AsyncIterator[str]:
        """Relay to ``target`` for the duration of the block; yield the relay's address."""
        host, port = target.rsplit(":", 1)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            await asyncio.gather(self._pipe(reader, up_writer, True),
                                 self._pipe(up_reader, writer, False), return_exceptions=True)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()


@contextlib.asynccontextmanager
async def serving(relay: Relay) -> AsyncIterator[str]:
    """Run the echo server on a free 127.0.0.1 port (answering gzip-compressed) behind ``relay``."""
    server = grpc.aio.server(compression=grpc.Compression.Gzip)
    server.add_generic_rpc_handlers(EchoServer().handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with relay.to(f"127.0.0.1:{port}") as address:
            yield address
    finally:
        await server.stop(grace=None)


def _assert_echo(outputs: dict[str, np.ndarray], sent: dict[str, np.ndarray] = BATCH) -> None:
    assert set(outputs) == set(sent)
    for name, array in sent.items():
        assert_same_tensor(outputs[name], array)


def test_tf_serving_over_grpc_with_our_bytes_client_and_the_official_stub():
    relay = Relay()

    async def sent_bytes(call) -> int:
        # The relay counts a request's bytes before the server can see them, so by the time
        # the reply is back they are all counted.
        before = relay.upstream_bytes
        await call
        return relay.upstream_bytes - before

    async def scenario() -> None:
        async with serving(relay) as address, grpc.aio.insecure_channel(address) as channel:
            gzip = gm.grpc_compression("gzip")
            # Our client: pre-serialized bytes through an identity-serializer call.
            request = InferRequest(BATCH, model_name="m", signature_name="serving_default")
            call = gm.unary_bytes_call(channel, gm.TFS_PREDICT)
            reply = await call(TFS.encode_request(request).body, compression=gzip, timeout=10)
            assert isinstance(reply, bytes)
            _assert_echo(TFS.decode_response(reply).outputs)
            zeros = TFS.encode_request(InferRequest(ZEROS, model_name="m")).body
            none = gm.grpc_compression("none")
            plain = await sent_bytes(call(zeros, compression=none, timeout=10))
            packed = await sent_bytes(call(zeros, compression=gzip, timeout=10))
            assert plain > len(zeros) > 20 * packed  # gzip really was applied on the wire
            # The official stub, with messages built by TensorFlow.
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            official = predict_pb2.PredictRequest()
            official.model_spec.name = "m"
            for name, array in BATCH.items():
                official.inputs[name].CopyFrom(tf.make_tensor_proto(array))
            answer = await stub.Predict(official, compression=gzip, timeout=10)
            _assert_echo({k: tf.make_ndarray(v) for k, v in answer.outputs.items()})
            assert answer.model_spec.version.value == 1
            official_zeros = predict_pb2.PredictRequest.FromString(zeros)
            assert await sent_bytes(stub.Predict(official_zeros, compression=gzip, timeout=10)) \
                < len(zeros) // 20
            metadata = await stub.GetModelMetadata(
                get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec={"name": "m"}, metadata_field=["signature_def"]), timeout=10)
            definitions = get_model_metadata_pb2.SignatureDefMap()
            assert metadata.metadata["signature_def"].Unpack(definitions)
            assert set(definitions.signature_def["serving_default"].inputs) == {
                "price", "country", "mask"}
            status = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "m"}), timeout=10)
            assert status.model_version_status[0].state == \
                get_model_status_pb2.ModelVersionStatus.AVAILABLE

    asyncio.run(scenario())


def test_v2_over_grpc_with_our_bytes_client_and_tritonclient():
    relay = Relay()

    async def sent_bytes(call) -> tuple[int, object]:
        before = relay.upstream_bytes
        reply = await call
        return relay.upstream_bytes - before, reply

    async def scenario() -> None:
        async with serving(relay) as address:
            zeros = V2.encode_request(InferRequest(ZEROS, model_name="m")).body
            async with grpc.aio.insecure_channel(address) as channel:
                request = InferRequest(BATCH, model_name="m", request_id="e2e")
                call = gm.unary_bytes_call(channel, gm.V2_MODEL_INFER)
                gzip = gm.grpc_compression("gzip")
                reply = await call(V2.encode_request(request).body, compression=gzip, timeout=10)
                response = V2.decode_response(reply)
                _assert_echo(response.outputs)
                assert response.request_id == "e2e"
                size, reply = await sent_bytes(call(zeros, compression=gzip, timeout=10))
                assert size < len(zeros) // 20  # gzip really was applied on the wire
                _assert_echo(V2.decode_response(reply).outputs, ZEROS)
                live = await gm.unary_bytes_call(channel, gm.V2_SERVER_LIVE)(
                    v2meta.EMPTY_REQUEST, timeout=10)
                assert v2meta.decode_ready(live) is True
            client = tritongrpc_aio.InferenceServerClient(address)
            try:
                inputs = [triton_input(name, array) for name, array in BATCH.items()]
                result = await client.infer("m", inputs, compression_algorithm="gzip",
                                            client_timeout=10)
                _assert_echo({name: result.as_numpy(name) for name in BATCH})
                zero_inputs = [triton_input("zeros", ZEROS["zeros"])]
                size, result = await sent_bytes(client.infer(
                    "m", zero_inputs, compression_algorithm="gzip", client_timeout=10))
                assert size < len(zeros) // 20
                _assert_echo({"zeros": result.as_numpy("zeros")}, ZEROS)
                assert await client.is_server_live() and await client.is_server_ready()
                assert await client.is_model_ready("m")
                metadata = await client.get_model_metadata("m")
                assert [t.name for t in metadata.inputs] == ["price", "country", "mask"]
            finally:
                await client.close()

    asyncio.run(scenario())

"""Interoperability of the gRPC codecs with the official stubs.

Our bytes must parse with TensorFlow Serving's and tritonclient's generated messages (and
``tf.make_ndarray`` / ``InferResult.as_numpy`` must read the tensors back), and their bytes
with ours, for every dtype, strings and zero-size tensors. The end-to-end tests run a small
echo server on 127.0.0.1 built from ``grpc_methods`` and call it with our bytes-only client
and with the official clients, gzip-compressed.
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
import tritonclient.grpc as tritongrpc
import tritonclient.grpc.aio as tritongrpc_aio
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import (
    deserialize_bytes_tensor,
    np_to_triton_dtype,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

from modelcaliper.errors import UsageError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec

pytestmark = pytest.mark.interop

TFS = TFServingGrpcCodec()
V2 = V2GrpcCodec()


def assert_same_tensor(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and bits (element lists for strings)."""
    want = np.asarray(want)
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object and got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


SAMPLES = [
    np.array([True, False, True]),  # bool
    np.array([-128, 0, 127], np.int8),  # int8 limits
    np.array([[-32768, 1], [2, 32767]], np.int16),  # int16, 2-D
    np.array([-(2**31), 2**31 - 1], np.int32),  # int32 limits
    np.array([-(2**63), 2**63 - 1], np.int64),  # int64 limits
    np.array([0, 255], np.uint8),  # uint8 limits
    np.array([0, 65535], np.uint16),  # uint16 limits (TF writes int_val)
    np.array([0, 2**32 - 1], np.uint32),  # uint32 limits
    np.array([0, 2**64 - 1], np.uint64),  # uint64 limits
    np.array([1.5, -np.inf, np.nan, 65504], np.float16),  # half with specials
    np.array([[1.25, np.nan], [np.inf, -0.0]], np.float32),  # float with specials and -0
    np.array([np.pi, -np.inf, 5e-324], np.float64),  # double incl. subnormal
    np.array([b"plain", "ünï".encode(), b"\xff\xfe\x00", b""], object),  # non-UTF-8 and empty
    np.zeros((0, 4), np.float32),  # zero-size numbers
    np.empty((2, 0), object),  # zero-size strings
    np.array(7, np.int64),  # scalar number
    np.array(b"only", object),  # scalar string
]
IDS = [f"{a.dtype}{list(a.shape)}" for a in SAMPLES]


# ---------------------------------------------------------------- TF Serving, message level


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_our_predict_request_reads_with_tensorflow(array):
    request = InferRequest({"x": array}, model_name="m", model_version="2",
                           signature_name="sig", outputs=["y"])
    official = predict_pb2.PredictRequest.FromString(TFS.encode_request(request).body)
    assert_same_tensor(tf.make_ndarray(official.inputs["x"]), array)
    spec = official.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("m", 2, "sig")
    assert list(official.output_filter) == ["y"]


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_tensorflow_predict_request_reads_with_ours(array):
    official = predict_pb2.PredictRequest()
    official.model_spec.name = "m"
    official.model_spec.version_label = "canary"
    official.inputs["x"].CopyFrom(tf.make_tensor_proto(array))
    back = TFS.decode_request(official.SerializeToString())
    assert_same_tensor(back.inputs["x"], array)
    assert (back.model_name, back.version_label, back.model_version) == ("m", "canary", None)


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_predict_responses_read_both_ways(array):
    ours = TFS.encode_response(InferResponse({"y": array}, model_name="m", model_version="3")).body
    official = predict_pb2.PredictResponse.FromString(ours)
    assert_same_tensor(tf.make_ndarray(official.outputs["y"]), array)
    assert (official.model_spec.name, official.model_spec.version.value) == ("m", 3)
    theirs = predict_pb2.PredictResponse()
    theirs.outputs["y"].CopyFrom(tf.make_tensor_proto(array))
    assert_same_tensor(TFS.decode_response(theirs.SerializeToString()).outputs["y"], array)


@pytest.mark.parametrize(
    ("value", "dtype", "shape"),
    [
        (1.5, tf.float32, [2, 3]),  # float_val fill
        (-7, tf.int8, [4]),  # int_val fill
        (2**40, tf.int64, [2, 2]),  # int64_val fill
        (True, tf.bool, [3]),  # bool_val fill
        (0.5, tf.float16, [5]),  # half_val fill
        (b"\xffk", tf.string, [2, 1]),  # string_val fill
    ],
)
def test_tensorflow_fill_protos_expand_like_make_ndarray(value, dtype, shape):
    proto = tf.make_tensor_proto(value, dtype=dtype, shape=shape)
    message = predict_pb2.PredictRequest()
    message.inputs["x"].CopyFrom(proto)
    got = TFS.decode_request(message.SerializeToString()).inputs["x"]
    assert_same_tensor(got, tf.make_ndarray(proto))


@pytest.mark.parametrize(
    ("tf_dtype", "field", "values"),
    [
        (tf.half, "half_val", [15360, 64512, 32256]),  # 1.0, -inf, nan as 16-bit patterns
        (tf.uint32, "uint32_val", [0, 2**32 - 1]),
        (tf.uint64, "uint64_val", [0, 2**64 - 1]),
        (tf.int64, "int64_val", [-(2**63), 1]),
        (tf.float64, "double_val", [0.1, float("-inf")]),
        (tf.uint8, "int_val", [0, 255]),
        (tf.int16, "int_val", [-32768, 32767]),
    ],
)
def test_tensorflow_value_fields_read_with_ours(tf_dtype, field, values):
    proto = tf.make_tensor_proto(np.zeros(len(values), tf_dtype.as_numpy_dtype))
    proto.ClearField("tensor_content")
    getattr(proto, field).extend(values)
    message = predict_pb2.PredictRequest()
    message.inputs["x"].CopyFrom(proto)
    assert_same_tensor(TFS.decode_request(message.SerializeToString()).inputs["x"],
                       tf.make_ndarray(proto))


SIGNATURE = Signature(
    inputs=(TensorSpec("price", DType.FP32, (-1,)), TensorSpec("country", DType.BYTES, (-1, 1)),
            TensorSpec("mask", DType.BOOL, (-1, 8))),
    outputs=(TensorSpec("score", DType.FP32, (-1, 1)),),
)


def test_our_metadata_response_unpacks_with_tensorflow_serving():
    body = tfmeta.encode_metadata_response(tfmeta.ModelRef("m", version="4"), [SIGNATURE])
    official = get_model_metadata_pb2.GetModelMetadataResponse.FromString(body)
    definitions = get_model_metadata_pb2.SignatureDefMap()
    assert official.metadata["signature_def"].Unpack(definitions)  # type_url matches
    definition = definitions.signature_def["serving_default"]
    assert definition.method_name == "tensorflow/serving/predict"
    for spec in SIGNATURE.inputs:
        info = definition.inputs[spec.name]
        assert info.dtype == spec.dtype.tf_enum
        assert [d.size for d in info.tensor_shape.dim] == list(spec.shape)
    assert (official.model_spec.name, official.model_spec.version.value) == ("m", 4)


def test_tensorflow_serving_metadata_response_reads_with_ours():
    definition = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    definition.inputs["age"].CopyFrom(meta_graph_pb2.TensorInfo(
        name="serving_default_age:0", dtype=tf.int64.as_datatype_enum,
        tensor_shape=tf.TensorShape([None, 1]).as_proto()))
    definition.inputs["blob"].CopyFrom(meta_graph_pb2.TensorInfo(
        name="serving_default_blob:0", dtype=tf.string.as_datatype_enum,
        tensor_shape=tf.TensorShape(None).as_proto()))
    definition.outputs["p"].CopyFrom(meta_graph_pb2.TensorInfo(
        name="Identity:0", dtype=tf.float32.as_datatype_enum,
        tensor_shape=tf.TensorShape([None]).as_proto()))
    definitions = get_model_metadata_pb2.SignatureDefMap()
    definitions.signature_def["serving_default"].CopyFrom(definition)
    definitions.signature_def["__saved_model_init_op"].SetInParent()
    official = get_model_metadata_pb2.GetModelMetadataResponse()
    official.model_spec.name = "m"
    official.model_spec.version.value = 12
    official.metadata["signature_def"].Pack(definitions)
    meta = tfmeta.decode_metadata_response(official.SerializeToString())
    signature = meta.signature()
    assert meta.model.version == "12"
    assert [(s.name, s.dtype, s.shape) for s in signature.inputs] == [
        ("age", DType.INT64, (-1, 1)), ("blob", DType.BYTES, (-1,))]
    assert signature.inputs[1].options["unknown_rank"] is True
    assert signature.inputs[0].options["tensor_name"] == "serving_default_age:0"
    assert [(s.name, s.dtype, s.shape) for s in signature.outputs] == [("p", DType.FP32, (-1,))]


def test_metadata_and_status_requests_read_both_ways():
    ours = tfmeta.encode_metadata_request(tfmeta.ModelRef("m", version="3"))
    official = get_model_metadata_pb2.GetModelMetadataRequest.FromString(ours)
    assert (official.model_spec.name, official.model_spec.version.value) == ("m", 3)
    assert list(official.metadata_field) == ["signature_def"]
    theirs = get_model_status_pb2.GetModelStatusRequest()
    theirs.model_spec.name = "m"
    theirs.model_spec.version_label = "stable"
    assert tfmeta.decode_status_request(theirs.SerializeToString()) == tfmeta.ModelRef(
        "m", version_label="stable")


def test_status_responses_read_both_ways():
    statuses = [tfmeta.VersionStatus(1, "END"), tfmeta.VersionStatus(2, "AVAILABLE"),
                tfmeta.VersionStatus(3, "LOADING", 14, "unavailable")]
    official = get_model_status_pb2.GetModelStatusResponse.FromString(
        tfmeta.encode_status_response(statuses))
    assert [(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
             s.status.error_code, s.status.error_message)
            for s in official.model_version_status] == [
        (1, "END", 0, ""), (2, "AVAILABLE", 0, ""), (3, "LOADING", 14, "unavailable")]
    assert tfmeta.decode_status_response(official.SerializeToString()) == statuses


# ---------------------------------------------------------------- v2 protocol, message level


def _triton_array(raw: bytes, datatype: str, shape) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes_tensor(raw).reshape(shape)
    return np.frombuffer(raw, dtype=triton_to_np_dtype(datatype)).reshape(shape)


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_our_infer_request_reads_with_tritonclient_stubs(array):
    request = InferRequest({"x": array, "other": np.array([1.0], np.float32)}, model_name="m",
                           model_version="1", request_id="r7", outputs=["y"],
                           parameters={"priority": 2})
    official = triton_pb2.ModelInferRequest.FromString(V2.encode_request(request).body)
    assert (official.model_name, official.model_version, official.id) == ("m", "1", "r7")
    assert official.parameters["priority"].int64_param == 2
    assert [o.name for o in official.outputs] == ["y"]
    tensor = official.inputs[0]
    got = _triton_array(official.raw_input_contents[0], tensor.datatype, list(tensor.shape))
    assert_same_tensor(got, array)
    assert tensor.name == "x" and list(tensor.shape) == list(array.shape)


def _triton_input(name: str, array: np.ndarray) -> tritongrpc.InferInput:
    tensor = tritongrpc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_tritonclient_infer_request_reads_with_ours(array):
    # The request exactly as tritonclient's own infer() builds it before sending.
    official = _get_inference_request(
        model_name="m", inputs=[_triton_input("x", array)], model_version="2", request_id="q",
        outputs=[tritongrpc.InferRequestedOutput("y")], sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, parameters={"mode": "fast"})
    back = V2.decode_request(official.SerializeToString())
    assert_same_tensor(back.inputs["x"], array)
    assert (back.model_name, back.model_version, back.request_id) == ("m", "2", "q")
    assert back.outputs == ["y"] and back.parameters == {"mode": "fast"}


@pytest.mark.parametrize("array", SAMPLES, ids=IDS)
def test_infer_responses_read_both_ways(array):
    ours = V2.encode_response(InferResponse({"y": array}, model_name="m", request_id="r")).body
    result = tritongrpc.InferResult(triton_pb2.ModelInferResponse.FromString(ours))
    assert_same_tensor(result.as_numpy("y"), array)
    theirs = triton_pb2.ModelInferResponse(model_name="m", id="r")
    datatype = _triton_input("y", array).datatype()
    theirs.outputs.add(name="y", datatype=datatype, shape=list(array.shape))
    raw = serialize_byte_tensor(array).item() if array.size and array.dtype == object else (
        b"" if array.dtype == object else array.tobytes())
    theirs.raw_output_contents.append(raw)
    back = V2.decode_response(theirs.SerializeToString())
    assert_same_tensor(back.outputs["y"], array)
    assert (back.model_name, back.request_id) == ("m", "r")


def test_typed_contents_from_the_official_messages_read_with_ours():
    official = triton_pb2.ModelInferRequest(model_name="m")
    official.inputs.add(name="f", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1, 2])
    official.inputs.add(name="u", datatype="UINT16", shape=[1]).contents.uint_contents.append(9)
    official.inputs.add(name="s", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
        [b"\xff", b""])
    official.inputs.add(name="b", datatype="BOOL", shape=[1]).contents.bool_contents.append(True)
    back = V2.decode_request(official.SerializeToString()).inputs
    assert_same_tensor(back["f"], np.array([1, 2], np.float32))
    assert_same_tensor(back["u"], np.array([9], np.uint16))
    assert_same_tensor(back["s"], np.array([b"\xff", b""], object))
    assert_same_tensor(back["b"], np.array([True]))


def test_v2_metadata_and_health_read_both_ways():
    body = v2meta.encode_model_metadata_response("m", SIGNATURE, ["1"], "caliper")
    official = triton_pb2.ModelMetadataResponse.FromString(body)
    assert [(t.name, t.datatype, list(t.shape)) for t in official.inputs] == [
        ("price", "FP32", [-1]), ("country", "BYTES", [-1, 1]), ("mask", "BOOL", [-1, 8])]
    back = v2meta.decode_model_metadata_response(official.SerializeToString())
    assert back.signature == SIGNATURE
    request = triton_pb2.ModelReadyRequest.FromString(v2meta.encode_model_ready_request("m", "2"))
    assert (request.name, request.version) == ("m", "2")
    assert triton_pb2.ServerLiveResponse.FromString(v2meta.encode_ready(True)).live is True
    assert v2meta.decode_ready(triton_pb2.ServerReadyResponse(ready=True).SerializeToString())


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
                inputs = [_triton_input(name, array) for name, array in BATCH.items()]
                result = await client.infer("m", inputs, compression_algorithm="gzip",
                                            client_timeout=10)
                _assert_echo({name: result.as_numpy(name) for name in BATCH})
                zero_inputs = [_triton_input("zeros", ZEROS["zeros"])]
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

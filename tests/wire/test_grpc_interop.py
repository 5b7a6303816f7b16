"""Interoperability of the gRPC codecs with the official generated messages.

Our bytes must parse with TensorFlow Serving's and tritonclient's generated messages (and
``tf.make_ndarray`` / ``InferResult.as_numpy`` must read the tensors back), and their bytes
with ours, for every dtype, strings and zero-size tensors. Calls over a real gRPC channel
are in ``test_grpc_end_to_end``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as tritongrpc
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import (
    deserialize_bytes_tensor,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec
from tests.wire.grpc_samples import (
    SAMPLE_IDS,
    SAMPLES,
    SIGNATURE,
    assert_same_tensor,
    triton_input,
)

pytestmark = pytest.mark.interop

TFS = TFServingGrpcCodec()
V2 = V2GrpcCodec()


# ---------------------------------------------------------------- TF Serving, message level


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_our_predict_request_reads_with_tensorflow(array):
    request = InferRequest({"x": array}, model_name="m", model_version="2",
                           signature_name="sig", outputs=["y"])
    official = predict_pb2.PredictRequest.FromString(TFS.encode_request(request).body)
    assert_same_tensor(tf.make_ndarray(official.inputs["x"]), array)
    spec = official.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("m", 2, "sig")
    assert list(official.output_filter) == ["y"]


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_tensorflow_predict_request_reads_with_ours(array):
    official = predict_pb2.PredictRequest()
    official.model_spec.name = "m"
    official.model_spec.version_label = "canary"
    official.inputs["x"].CopyFrom(tf.make_tensor_proto(array))
    back = TFS.decode_request(official.SerializeToString())
    assert_same_tensor(back.inputs["x"], array)
    assert (back.model_name, back.version_label, back.model_version) == ("m", "canary", None)


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
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


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
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


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_tritonclient_infer_request_reads_with_ours(array):
    # The request exactly as tritonclient's own infer() builds it before sending.
    official = _get_inference_request(
        model_name="m", inputs=[triton_input("x", array)], model_version="2", request_id="q",
        outputs=[tritongrpc.InferRequestedOutput("y")], sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, parameters={"mode": "fast"})
    back = V2.decode_request(official.SerializeToString())
    assert_same_tensor(back.inputs["x"], array)
    assert (back.model_name, back.model_version, back.request_id) == ("m", "2", "q")
    assert back.outputs == ["y"] and back.parameters == {"mode": "fast"}


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_infer_responses_read_both_ways(array):
    ours = V2.encode_response(InferResponse({"y": array}, model_name="m", request_id="r")).body
    result = tritongrpc.InferResult(triton_pb2.ModelInferResponse.FromString(ours))
    assert_same_tensor(result.as_numpy("y"), array)
    theirs = triton_pb2.ModelInferResponse(model_name="m", id="r")
    datatype = triton_input("y", array).datatype()
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

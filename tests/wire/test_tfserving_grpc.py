"""TF Serving gRPC codec: Predict messages, every dtype, TF's value fields, malformed tensors,
and the model metadata / model status helpers."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire import get_codec
from modelcaliper.wire.protos import tfserving_pb2 as pb
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec, tensor_from_proto
from modelcaliper.wire.tfserving_grpc_meta import (
    SIGNATURE_DEF_TYPE_URL,
    ModelMetadata,
    ModelRef,
    VersionStatus,
    decode_metadata_request,
    decode_metadata_response,
    decode_status_request,
    decode_status_response,
    encode_metadata_request,
    encode_metadata_response,
    encode_status_request,
    encode_status_response,
)
from tests.wire.grpc_samples import SAMPLE_IDS, SAMPLES, SIGNATURE, assert_same_tensor

CODEC = TFServingGrpcCodec()


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_every_dtype_round_trips_through_request_and_response(array):
    request = InferRequest({"x": array}, model_name="m")
    back = CODEC.decode_request(CODEC.encode_request(request).body)
    assert_same_tensor(back.inputs["x"], array)
    response = CODEC.decode_response(CODEC.encode_response(InferResponse({"y": array}), back).body)
    assert_same_tensor(response.outputs["y"], array)


def test_numbers_travel_as_tensor_content_and_strings_as_string_val():
    request = InferRequest({"f": np.arange(3, dtype=np.float32), "s": ["a", "b"]})
    message = pb.PredictRequest.FromString(CODEC.encode_request(request).body)
    numbers, strings = message.inputs["f"], message.inputs["s"]
    assert numbers.tensor_content == np.arange(3, dtype="<f4").tobytes()
    assert len(numbers.float_val) == 0
    assert list(strings.string_val) == [b"a", b"b"] and not strings.tensor_content
    assert numbers.dtype == pb.DT_FLOAT and strings.dtype == pb.DT_STRING


def test_assembled_request_equals_the_message_built_field_by_field():
    arrays = {"dense": np.random.default_rng(1).random((4, 3)).astype(np.float32),
              "ids": np.array([[1], [2]], np.int64), "cat": np.array([b"x", b""], object)}
    request = InferRequest(arrays, model_name="ranker", model_version="7",
                           signature_name="serving_default", outputs=["score", "aux"])
    body = CODEC.encode_request(request).body
    expected = pb.PredictRequest(output_filter=["score", "aux"])
    expected.model_spec.name = "ranker"
    expected.model_spec.version.value = 7
    expected.model_spec.signature_name = "serving_default"
    for name, arr in arrays.items():
        tensor = expected.inputs[name]
        for size in arr.shape:
            tensor.tensor_shape.dim.add().size = size
        if arr.dtype == object:
            tensor.dtype = pb.DT_STRING
            tensor.string_val.extend(arr.ravel().tolist())
        else:
            tensor.dtype = {np.float32: pb.DT_FLOAT, np.int64: pb.DT_INT64}[arr.dtype.type]
            tensor.tensor_content = arr.tobytes()
    assert pb.PredictRequest.FromString(body) == expected
    assert len(body) == expected.ByteSize()  # nothing extra on the wire


def test_cached_prefixes_never_leak_data_between_requests():
    first = CODEC.encode_request(InferRequest({"x": np.array([1.0, 2.0], np.float32)})).body
    second = CODEC.encode_request(InferRequest({"x": np.array([3.0, 4.0], np.float32)})).body
    assert CODEC.decode_request(first).inputs["x"].tolist() == [1.0, 2.0]
    assert CODEC.decode_request(second).inputs["x"].tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    "replacement",
    [
        np.array([1, 2], dtype=">i4"),  # big-endian array put in after construction
        np.arange(6, dtype=np.int32).reshape(2, 3).T[:, 0],  # non-contiguous view
    ],
)
def test_arrays_swapped_in_after_construction_are_still_encoded_right(replacement):
    request = InferRequest({"x": np.array([0, 0], np.int32)})
    CODEC.encode_request(request)  # warm the cache with the little-endian layout
    request.inputs["x"] = replacement
    back = CODEC.decode_request(CODEC.encode_request(request).body).inputs["x"]
    assert back.dtype == np.dtype("<i4") and back.tolist() == replacement.tolist()


def test_strings_put_in_as_str_after_construction_are_sent_as_utf8():
    request = InferRequest({"s": np.array([b"a"], object)})
    CODEC.encode_request(request)
    request.inputs["s"] = np.array(["é"], object)
    assert CODEC.decode_request(CODEC.encode_request(request).body).inputs["s"].tolist() == [
        "é".encode()
    ]



@pytest.mark.parametrize(
    "replacement",
    [
        np.arange(6, dtype=np.float32).reshape(3, 2),  # same names, another batch size
        np.array([[7, 8]], np.int32),  # same names and shape, another dtype
        np.array([[b"a", b"bc"]], object),  # numbers become strings
        [[0.5, 0.25]],  # a plain list put in after construction
    ],
)
def test_the_cached_layout_follows_changes_under_the_same_names(replacement):
    request = InferRequest({"x": np.zeros((1, 2), np.float32), "s": np.array([b"k"], object)})
    CODEC.encode_request(request)  # cache the layout of these names
    request.inputs["x"] = replacement
    back = CODEC.decode_request(CODEC.encode_request(request).body).inputs
    assert_same_tensor(back["x"], as_tensor(replacement))
    assert back["s"].tolist() == [b"k"]

def test_many_inputs_and_request_fields_survive():
    arrays = {f"f{i:03d}": np.full(3, i, np.float32) for i in range(50)}
    arrays["cat"] = np.array([b"a", b"b", b"c"], object)
    request = InferRequest(arrays, model_name="wide", signature_name="predict", outputs=["p"])
    back = CODEC.decode_request(CODEC.encode_request(request).body)
    assert list(back.inputs) == sorted(arrays)  # decoded inputs come sorted by name
    for name, arr in arrays.items():
        assert_same_tensor(back.inputs[name], arr)
    assert (back.model_name, back.signature_name, back.outputs) == ("wide", "predict", ["p"])


@pytest.mark.parametrize(
    ("version", "label", "expected"),
    [
        ("3", None, ("3", None)),  # numeric version travels as Int64Value
        ("0", None, ("0", None)),  # version 0 is still a version (wrapper presence)
        (None, "stable", (None, "stable")),  # version label
        (None, None, (None, None)),  # neither: the server picks
    ],
)
def test_version_and_version_label(version, label, expected):
    request = InferRequest({"x": [1.0]}, model_version=version, version_label=label)
    back = CODEC.decode_request(CODEC.encode_request(request).body)
    assert (back.model_version, back.version_label) == expected
    spec = pb.PredictRequest.FromString(CODEC.encode_request(request).body).model_spec
    assert spec.WhichOneof("version_choice") == (
        "version" if version else "version_label" if label else None
    )


@pytest.mark.parametrize(
    ("version", "label", "fragment"),
    [
        ("v1", None, "integers"),  # TF Serving versions are numbers
        ("1", "stable", "not both"),  # the oneof holds one of them
    ],
)
def test_bad_versions_are_usage_errors(version, label, fragment):
    with pytest.raises(UsageError, match=fragment):
        CODEC.encode_request(InferRequest({"x": [1.0]}, model_version=version, version_label=label))


def test_response_names_model_version_and_signature():
    request = InferRequest({"x": [1.0]}, signature_name="serving_default")
    response = InferResponse({"y": [2.0]}, model_name="m", model_version="5")
    body = CODEC.encode_response(response, request)
    spec = pb.PredictResponse.FromString(body.body).model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("m", 5, "serving_default")
    back = CODEC.decode_response(body.body)
    assert (back.model_name, back.model_version) == ("m", "5")


def test_get_codec_returns_this_codec():
    codec = get_codec("tfserving-grpc")
    assert isinstance(codec, TFServingGrpcCodec)
    assert (codec.name, codec.transport) == ("tfserving-grpc", "grpc")


# ---------------------------------------------------------------- TF's typed value fields


def _tensor(dtype: int, shape: list[int], **fields) -> pb.TensorProto:
    tensor = pb.TensorProto(dtype=dtype, **fields)
    tensor.tensor_shape.SetInParent()
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    return tensor


def _half_bits(values):
    return np.array(values, np.float16).view(np.uint16).astype(int).tolist()


VALUE_FIELDS = [
    (DType.FP32, "float_val", [1.5, -np.inf], np.array([1.5, -np.inf], np.float32)),
    (DType.FP64, "double_val", [0.1, np.inf], np.array([0.1, np.inf])),
    (DType.INT8, "int_val", [-128, 127], np.array([-128, 127], np.int8)),
    (DType.INT16, "int_val", [-32768, 32767], np.array([-32768, 32767], np.int16)),
    (DType.INT32, "int_val", [-(2**31), 5], np.array([-(2**31), 5], np.int32)),
    (DType.UINT8, "int_val", [0, 255], np.array([0, 255], np.uint8)),
    (DType.UINT16, "int_val", [0, 65535], np.array([0, 65535], np.uint16)),
    (DType.INT64, "int64_val", [-(2**63), 2**63 - 1], np.array([-(2**63), 2**63 - 1], np.int64)),
    (DType.BOOL, "bool_val", [True, False], np.array([True, False])),
    (DType.FP16, "half_val", _half_bits([1.0, -np.inf]), np.array([1.0, -np.inf], np.float16)),
    (DType.UINT32, "uint32_val", [0, 2**32 - 1], np.array([0, 2**32 - 1], np.uint32)),
    (DType.UINT64, "uint64_val", [0, 2**64 - 1], np.array([0, 2**64 - 1], np.uint64)),
    (DType.BYTES, "string_val", [b"\xff", b""], np.array([b"\xff", b""], object)),
]


@pytest.mark.parametrize(("dtype", "field", "values", "want"), VALUE_FIELDS,
                         ids=[row[0].name for row in VALUE_FIELDS])
def test_every_value_field_decodes(dtype, field, values, want):
    got = tensor_from_proto(_tensor(dtype.tf_enum, [2], **{field: values}), "x")
    assert_same_tensor(got, want)


@pytest.mark.parametrize(("dtype", "field", "values", "want"), VALUE_FIELDS,
                         ids=[row[0].name for row in VALUE_FIELDS])
def test_one_value_with_a_larger_shape_fills_the_tensor(dtype, field, values, want):
    got = tensor_from_proto(_tensor(dtype.tf_enum, [2, 3], **{field: values[:1]}), "x")
    expected = np.empty((2, 3), dtype=want.dtype)
    expected[...] = want[0]
    assert_same_tensor(got, expected)


def test_one_value_fills_a_tensor_up_to_the_limit():
    tensor = _tensor(pb.DT_FLOAT, [1000], float_val=[2.0])
    assert tensor_from_proto(tensor, "x", max_bytes=4000).tolist() == [2.0] * 1000
    with pytest.raises(PayloadTooLargeError, match="4000-byte limit"):
        tensor_from_proto(_tensor(pb.DT_FLOAT, [1001], float_val=[2.0]), "x", max_bytes=4000)


def test_tensor_content_wins_over_value_fields_as_in_tensorflow():
    tensor = _tensor(pb.DT_INT32, [1], tensor_content=np.int32(9).tobytes(), int_val=[1])
    assert tensor_from_proto(tensor, "x").tolist() == [9]


BAD_TENSORS = [
    # (tensor, error type, fragment of the message)
    (_tensor(pb.DT_FLOAT, [3], tensor_content=b"\x00" * 8), WireError, "needs 12"),  # short content
    (_tensor(pb.DT_FLOAT, [3], float_val=[1, 2]), WireError, "2 float_val values"),  # too few
    (_tensor(pb.DT_FLOAT, [3], float_val=[1, 2, 3, 4]), WireError, "4 float_val"),  # too many
    (_tensor(pb.DT_FLOAT, [3]), WireError, "0 float_val"),  # no data at all
    (_tensor(pb.DT_FLOAT, [0], float_val=[1]), WireError, "holds 0"),  # value for an empty shape
    (_tensor(pb.DT_FLOAT, [3], int_val=[1, 2, 3]), WireError, "float_val"),  # wrong value field
    (_tensor(99, [1]), WireError, "number 99"),  # unknown DataType number
    (_tensor(pb.DT_INVALID, [1]), WireError, "DT_INVALID"),  # unset dtype
    (_tensor(pb.DT_COMPLEX64, [1]), WireError, "DT_COMPLEX64"),  # TF type we do not speak
    (pb.TensorProto(dtype=pb.DT_FLOAT, tensor_shape=pb.TensorShapeProto(unknown_rank=True)),
     WireError, "unknown_rank"),  # unknown rank
    (_tensor(pb.DT_FLOAT, [2, -1], float_val=[1]), WireError, "negative"),  # negative dimension
    (_tensor(pb.DT_FLOAT, [2**40], float_val=[1]), PayloadTooLargeError, "limit"),  # fill bomb
    (_tensor(pb.DT_FLOAT, [2**40], tensor_content=b"\x00" * 4), WireError, "needs"),  # tiny content
    # huge declared shape with two strings
    (_tensor(pb.DT_STRING, [10**12], string_val=[b"a", b"b"]), WireError, "2 string_val"),
    # strings sent as tensor_content
    (_tensor(pb.DT_STRING, [1], tensor_content=b"\x01a"), WireError, "string_val"),
    (_tensor(pb.DT_INT8, [1], int_val=[300]), WireError, "300 does not fit INT8"),  # out of range
    (_tensor(pb.DT_UINT8, [1], int_val=[-1]), WireError, "-1 does not fit UINT8"),  # negative uint8
    (_tensor(pb.DT_HALF, [1], half_val=[70000]), WireError, "half"),  # not a 16-bit pattern
]


@pytest.mark.parametrize(("tensor", "error", "fragment"), BAD_TENSORS)
def test_malformed_tensors_are_rejected_naming_the_tensor(tensor, error, fragment):
    message = pb.PredictRequest()
    message.inputs["feat"].CopyFrom(tensor)
    with pytest.raises(error) as info:
        CODEC.decode_request(message.SerializeToString())
    assert type(info.value) is error
    assert "'feat'" in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b"\x12\xff\xff\xff\x0f", WireError, "malformed PredictRequest"),  # length past the end
        (b"\x0a\x05ab", WireError, "malformed"),  # truncated model_spec
        (b"\x12" + b"\x00" * 64, PayloadTooLargeError, "limit"),  # beyond max_body_bytes
    ],
)
def test_broken_bodies_are_wire_errors(body, error, fragment):
    with pytest.raises(error, match=fragment):
        TFServingGrpcCodec(max_body_bytes=32).decode_request(body)


def test_broken_response_is_a_wire_error():
    with pytest.raises(WireError, match="malformed PredictResponse"):
        CODEC.decode_response(b"\x0a\x10abc")


# ---------------------------------------------------------------- metadata and status

def test_metadata_request_round_trips():
    body = encode_metadata_request(ModelRef("m", version="2"))
    assert decode_metadata_request(body) == (ModelRef("m", version="2"), ["signature_def"])


def test_metadata_response_round_trips_signatures_sorted_by_name():
    body = encode_metadata_response(ModelRef("m", version="4"), [SIGNATURE])
    meta = decode_metadata_response(body)
    assert meta.model == ModelRef("m", version="4")
    signature = meta.signature()
    assert signature.name == "serving_default"
    assert [s.name for s in signature.inputs] == ["country", "mask", "price"]
    assert {s.name: (s.dtype, s.shape) for s in signature.inputs} == {
        s.name: (s.dtype, s.shape) for s in SIGNATURE.inputs}
    assert signature.outputs == SIGNATURE.outputs


def test_metadata_signature_def_is_packed_with_tf_servings_type_url():
    message = pb.GetModelMetadataResponse.FromString(
        encode_metadata_response(ModelRef("m"), [SIGNATURE]))
    packed = message.metadata["signature_def"]
    assert packed.type_url == SIGNATURE_DEF_TYPE_URL
    definitions = pb.SignatureDefMap.FromString(packed.value)
    definition = definitions.signature_def["serving_default"]
    assert definition.method_name == "tensorflow/serving/predict"
    assert [d.size for d in definition.inputs["country"].tensor_shape.dim] == [-1, 1]


def test_unknown_rank_signature_tensors_are_kept_as_an_option():
    spec = TensorSpec("any", DType.FP32, (-1,), {"unknown_rank": True})
    body = encode_metadata_response(ModelRef("m"), [Signature(inputs=(spec,))])
    back = decode_metadata_response(body).signature().inputs[0]
    assert back.options.get("unknown_rank") is True and back.dtype is DType.FP32


@pytest.mark.parametrize(
    ("names", "asked", "chosen"),
    [
        (["serving_default", "other"], None, "serving_default"),  # the default when present
        (["only", "__saved_model_init_op"], None, "only"),  # the only served one
        (["a", "b"], "b", "b"),  # an explicit choice
    ],
)
def test_signature_choice(names, asked, chosen):
    signatures = {n: Signature(inputs=SIGNATURE.inputs, name=n) for n in names}
    meta = ModelMetadata(ModelRef("m"), signatures)
    assert meta.signature(asked).name == chosen


def test_missing_signature_names_the_known_ones():
    meta = ModelMetadata(ModelRef("m"), {"a": SIGNATURE, "b": SIGNATURE})
    with pytest.raises(WireError, match=r"no signature 'serving_default' \(has: a, b\)"):
        meta.signature()


def test_metadata_with_another_any_type_is_rejected():
    message = pb.GetModelMetadataResponse()
    message.metadata["signature_def"].type_url = "type.googleapis.com/other.Thing"
    with pytest.raises(WireError, match="other.Thing"):
        decode_metadata_response(message.SerializeToString())


def test_metadata_with_unsupported_dtype_names_the_tensor():
    definitions = pb.SignatureDefMap()
    definitions.signature_def["serving_default"].inputs["handle"].dtype = pb.DT_RESOURCE
    message = pb.GetModelMetadataResponse()
    message.metadata["signature_def"].type_url = SIGNATURE_DEF_TYPE_URL
    message.metadata["signature_def"].value = definitions.SerializeToString()
    with pytest.raises(WireError, match="'handle'"):
        decode_metadata_response(message.SerializeToString())


def test_status_round_trips():
    assert decode_status_request(encode_status_request(ModelRef("m", version_label="canary"))) == \
        ModelRef("m", version_label="canary")
    statuses = [VersionStatus(3, "AVAILABLE"), VersionStatus(4, "LOADING", 14, "still loading")]
    assert decode_status_response(encode_status_response(statuses)) == statuses


def test_unknown_status_state_is_rejected():
    with pytest.raises(WireError, match="unknown model state 'READY'"):
        encode_status_response([VersionStatus(1, "READY")])

"""Open Inference Protocol (v2) gRPC codec: ModelInfer messages, raw and typed contents,
parameters, malformed tensors, and the metadata / readiness helpers."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.wire import get_codec
from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.openinference_grpc_meta import (
    ModelMetadata,
    ServerMetadata,
    decode_model_metadata_request,
    decode_model_metadata_response,
    decode_model_ready_request,
    decode_ready,
    decode_server_metadata_response,
    encode_model_metadata_request,
    encode_model_metadata_response,
    encode_model_ready_request,
    encode_ready,
    encode_server_metadata_response,
)
from modelcaliper.wire.protos import openinference_pb2 as pb
from modelcaliper.wire.rawtensor import to_raw
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor
from tests.wire.grpc_samples import SAMPLE_IDS, SAMPLES, SIGNATURE, assert_same_tensor

CODEC = V2GrpcCodec()


@pytest.mark.parametrize("array", SAMPLES, ids=SAMPLE_IDS)
def test_every_dtype_round_trips_through_request_and_response(array):
    request = InferRequest({"x": array}, model_name="m", request_id="r-1")
    back = CODEC.decode_request(CODEC.encode_request(request).body)
    assert_same_tensor(back.inputs["x"], array)
    response = CODEC.decode_response(CODEC.encode_response(InferResponse({"y": array}), back).body)
    assert_same_tensor(response.outputs["y"], array)
    assert response.request_id == "r-1"  # echoed from the request


def test_every_tensor_travels_raw_in_input_order():
    arrays = {"b": np.array([1.0, 2.0], np.float32), "a": np.array([b"x", b""], object)}
    message = pb.ModelInferRequest.FromString(CODEC.encode_request(InferRequest(arrays)).body)
    assert [t.name for t in message.inputs] == ["b", "a"]
    assert [t.datatype for t in message.inputs] == ["FP32", "BYTES"]
    assert list(message.raw_input_contents) == [
        arrays["b"].tobytes(), b"\x01\x00\x00\x00x\x00\x00\x00\x00"]
    assert not any(t.HasField("contents") for t in message.inputs)


def test_assembled_request_equals_the_message_built_field_by_field():
    arrays = {"dense": np.arange(6, dtype=np.float32).reshape(2, 3),
              "cat": np.array([b"q"], object)}
    request = InferRequest(arrays, model_name="ranker", model_version="2", request_id="abc",
                           outputs=["score"], parameters={"priority": 1, "tag": "t"})
    body = CODEC.encode_request(request).body
    expected = pb.ModelInferRequest(model_name="ranker", model_version="2", id="abc")
    expected.parameters["priority"].int64_param = 1
    expected.parameters["tag"].string_param = "t"
    for name, arr in arrays.items():
        dtype = DType.BYTES if arr.dtype == object else DType.FP32
        expected.inputs.add(name=name, datatype=dtype.v2, shape=arr.shape)
        expected.raw_input_contents.append(to_raw(arr, dtype))
    expected.outputs.add(name="score")
    assert pb.ModelInferRequest.FromString(body) == expected
    assert len(body) == expected.ByteSize()  # nothing extra on the wire


def test_cached_descriptions_never_leak_data_between_requests():
    first = CODEC.encode_request(InferRequest({"x": np.array([1, 2], np.int16)})).body
    second = CODEC.encode_request(InferRequest({"x": np.array([3, 4], np.int16)})).body
    assert CODEC.decode_request(first).inputs["x"].tolist() == [1, 2]
    assert CODEC.decode_request(second).inputs["x"].tolist() == [3, 4]


def test_big_endian_array_swapped_in_after_construction_is_encoded_little_endian():
    request = InferRequest({"x": np.array([0.0], np.float64)})
    CODEC.encode_request(request)
    request.inputs["x"] = np.array([1.5], dtype=">f8")
    back = CODEC.decode_request(CODEC.encode_request(request).body).inputs["x"]
    assert back.dtype == np.dtype("<f8") and back.tolist() == [1.5]



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

def test_request_fields_survive():
    request = InferRequest({"x": [1]}, model_name="m", model_version="3", request_id="id-9",
                           outputs=["a", "b"])
    back = CODEC.decode_request(CODEC.encode_request(request).body)
    assert (back.model_name, back.model_version, back.request_id, back.outputs) == (
        "m", "3", "id-9", ["a", "b"])


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (True, "bool_param"),  # bool before int: bool is an int in python
        (-5, "int64_param"),  # fits int64
        (2**64 - 1, "uint64_param"),  # only fits uint64
        (np.int32(4), "int64_param"),  # numpy integers count as ints
        (0.25, "double_param"),  # float
        ("fast", "string_param"),  # str
    ],
)
def test_parameters_map_to_their_oneof_field_and_back(value, field):
    request = InferRequest({"x": [1]}, parameters={"p": value})
    message = pb.ModelInferRequest.FromString(CODEC.encode_request(request).body)
    assert message.parameters["p"].WhichOneof("parameter_choice") == field
    assert CODEC.decode_request(CODEC.encode_request(request).body).parameters == {"p": value}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"raw", "bytes cannot be sent"),  # bytes have no InferParameter field
        (2**64, "does not fit in 64 bits"),  # beyond uint64
        (-(2**63) - 1, "does not fit in 64 bits"),  # below int64
    ],
)
def test_unsendable_parameters_are_usage_errors(value, fragment):
    with pytest.raises(UsageError, match=f"parameter 'p': .*{fragment}"):
        CODEC.encode_request(InferRequest({"x": [1]}, parameters={"p": value}))


def test_parameter_without_a_value_decodes_as_none():
    message = pb.ModelInferRequest()
    message.parameters["empty"].SetInParent()
    assert CODEC.decode_request(message.SerializeToString()).parameters == {"empty": None}


def test_response_fields_survive():
    response = InferResponse({"y": [1.0]}, model_name="m", model_version="2", request_id="r",
                             parameters={"sequence_end": True})
    back = CODEC.decode_response(CODEC.encode_response(response).body)
    assert (back.model_name, back.model_version, back.request_id, back.parameters) == (
        "m", "2", "r", {"sequence_end": True})


def test_get_codec_returns_this_codec():
    codec = get_codec("v2-grpc")
    assert isinstance(codec, V2GrpcCodec)
    assert (codec.name, codec.transport) == ("v2-grpc", "grpc")


# ---------------------------------------------------------------- typed contents

TYPED = [
    (DType.BOOL, "bool_contents", [True, False], np.array([True, False])),
    (DType.INT8, "int_contents", [-128, 127], np.array([-128, 127], np.int8)),
    (DType.INT16, "int_contents", [-32768, 32767], np.array([-32768, 32767], np.int16)),
    (DType.INT32, "int_contents", [-(2**31), 7], np.array([-(2**31), 7], np.int32)),
    (DType.INT64, "int64_contents", [-(2**63), 2**63 - 1],
     np.array([-(2**63), 2**63 - 1], np.int64)),
    (DType.UINT8, "uint_contents", [0, 255], np.array([0, 255], np.uint8)),
    (DType.UINT16, "uint_contents", [0, 65535], np.array([0, 65535], np.uint16)),
    (DType.UINT32, "uint_contents", [0, 2**32 - 1], np.array([0, 2**32 - 1], np.uint32)),
    (DType.UINT64, "uint64_contents", [0, 2**64 - 1], np.array([0, 2**64 - 1], np.uint64)),
    (DType.FP32, "fp32_contents", [1.5, -np.inf], np.array([1.5, -np.inf], np.float32)),
    (DType.FP64, "fp64_contents", [0.1, np.inf], np.array([0.1, np.inf])),
    (DType.BYTES, "bytes_contents", [b"\xff", b""], np.array([b"\xff", b""], object)),
]


def _typed_request(datatype: str, shape: list[int], field: str | None = None, values=(),
                   name: str = "feat") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
    if field is not None:
        getattr(tensor.contents, field).extend(values)
    return message


@pytest.mark.parametrize(("dtype", "field", "values", "want"), TYPED,
                         ids=[r[0].name for r in TYPED])
def test_every_typed_contents_field_decodes(dtype, field, values, want):
    body = _typed_request(dtype.v2, [2], field, values).SerializeToString()
    assert_same_tensor(CODEC.decode_request(body).inputs["feat"], want)


def test_typed_contents_keep_their_shape_and_zero_size_works():
    message = _typed_request("FP32", [2, 2], "fp32_contents", [1, 2, 3, 4])
    message.inputs.add(name="empty", datatype="INT64", shape=[0, 3])
    back = CODEC.decode_request(message.SerializeToString()).inputs
    assert back["feat"].tolist() == [[1, 2], [3, 4]] and back["empty"].shape == (0, 3)


def _with_raw(datatype: str, shape: list[int], raw: bytes, **contents) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest()
    tensor = message.inputs.add(name="feat", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    message.raw_input_contents.append(raw)
    return message


BAD_REQUESTS = [
    # (message, error type, fragment of the message)
    # too few values
    (_typed_request("FP32", [3], "fp32_contents", [1, 2]), WireError, "2 values"),
    # too many values
    (_typed_request("FP32", [1], "fp32_contents", [1, 2]), WireError, "holds 1"),
    # values in the field of another datatype
    (_typed_request("FP32", [2], "int_contents", [1, 2]), WireError, "fp32_contents"),
    # FP16 has no typed field at all
    (_typed_request("FP16", [1], "fp32_contents", [1.0]), WireError, "FP16 has no typed"),
    # value out of the declared type's range
    (_typed_request("INT8", [1], "int_contents", [128]), WireError, "128 does not fit INT8"),
    (_typed_request("UINT16", [1], "uint_contents", [70000]), WireError, "UINT16"),
    # a datatype name that is not v2's
    (_typed_request("FLOAT", [1], "fp32_contents", [1.0]), WireError, "'FLOAT'"),
    # negative dimension
    (_typed_request("FP32", [-1], "fp32_contents", []), WireError, "negative"),
    # huge declared shape with one value
    (_typed_request("BYTES", [10**12], "bytes_contents", [b"a"]), WireError, "1 values"),
    (_with_raw("FP32", [3], b"\x00" * 8), WireError, "needs 12"),  # short raw numbers
    (_with_raw("FP32", [2**40], b"\x00" * 4), WireError, "needs"),  # huge shape, tiny raw
    (_with_raw("BYTES", [1], b"\x05\x00\x00\x00ab"), WireError, "declares 5 bytes"),  # overrun
    (_with_raw("BYTES", [10**9], b"\x00" * 8), PayloadTooLargeError, "declares"),  # count bomb
    (_with_raw("FP32", [2, -2], b""), WireError, "negative"),  # negative dim, raw
    (_with_raw("FP32", [1], b"\x00" * 4, fp32_contents=[1.0]), WireError, "both"),  # raw and typed
    # unknown datatype with raw contents
    (_with_raw("COMPLEX", [1], b"\x00"), WireError, "'COMPLEX' is not a v2 datatype"),
]


@pytest.mark.parametrize(("message", "error", "fragment"), BAD_REQUESTS)
def test_malformed_tensors_are_rejected_naming_the_tensor(message, error, fragment):
    with pytest.raises(error) as info:
        CODEC.decode_request(message.SerializeToString())
    assert type(info.value) is error
    assert "'feat'" in str(info.value) and fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_raw_contents_must_cover_every_input():
    message = _typed_request("FP32", [1], name="a")
    message.inputs.add(name="b", datatype="FP32", shape=[1])
    message.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(WireError, match="raw_input_contents has 1 entries for 2 tensors"):
        CODEC.decode_request(message.SerializeToString())


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_a_tensor_named_twice_is_rejected(raw):
    message = pb.ModelInferRequest()
    for _ in range(2):
        tensor = message.inputs.add(name="feat", datatype="INT32", shape=[1])
        if raw:
            message.raw_input_contents.append(b"\x01\x00\x00\x00")
        else:
            tensor.contents.int_contents.append(1)
    with pytest.raises(WireError, match="'feat': tensor appears twice"):
        CODEC.decode_request(message.SerializeToString())


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b"\x2a\xff\xff\xff\x0f", WireError, "malformed ModelInferRequest"),  # length past the end
        (b"\x0a\x05ab", WireError, "malformed"),  # truncated model_name
        (b"\x3a" + b"\x00" * 64, PayloadTooLargeError, "limit"),  # beyond max_body_bytes
    ],
)
def test_broken_bodies_are_wire_errors(body, error, fragment):
    with pytest.raises(error, match=fragment):
        V2GrpcCodec(max_body_bytes=32).decode_request(body)


def test_broken_response_is_a_wire_error():
    with pytest.raises(WireError, match="malformed ModelInferResponse"):
        CODEC.decode_response(b"\x2a\x10abc")


# ---------------------------------------------------------------- metadata and health

def test_model_metadata_round_trips_in_message_order():
    body = encode_model_metadata_response("m", SIGNATURE, versions=["1", "2"], platform="onnx")
    meta = decode_model_metadata_response(body)
    assert meta == ModelMetadata("m", SIGNATURE, ("1", "2"), "onnx")
    assert [s.name for s in meta.signature.inputs] == ["price", "country", "mask"]


def test_model_metadata_with_bad_entries_names_the_tensor():
    message = pb.ModelMetadataResponse(name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[-1])
    message.inputs.add(name="x", datatype="FP32", shape=[-1])
    with pytest.raises(WireError, match="'x': metadata lists the tensor twice"):
        decode_model_metadata_response(message.SerializeToString())
    message = pb.ModelMetadataResponse(name="m")
    message.inputs.add(name="y", datatype="TF_FLOAT", shape=[-1])
    with pytest.raises(WireError, match="'y'"):
        decode_model_metadata_response(message.SerializeToString())
    message = pb.ModelMetadataResponse(name="m")
    message.outputs.add(name="z", datatype="FP32", shape=[-2])
    with pytest.raises(WireError, match="'z': .*below -1"):
        decode_model_metadata_response(message.SerializeToString())


@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        (encode_model_metadata_request, decode_model_metadata_request),  # ModelMetadataRequest
        (encode_model_ready_request, decode_model_ready_request),  # ModelReadyRequest
    ],
)
def test_model_requests_round_trip(encode, decode):
    assert decode(encode("m", "3")) == ("m", "3")
    assert decode(encode("m")) == ("m", None)


@pytest.mark.parametrize("message", [pb.ServerLiveResponse, pb.ServerReadyResponse,
                                     pb.ModelReadyResponse])
@pytest.mark.parametrize("value", [True, False])
def test_ready_and_live_responses(message, value):
    body = encode_ready(value)
    parsed = message.FromString(body)
    assert parsed.ListFields() == ([] if not value else [(parsed.DESCRIPTOR.fields[0], True)])
    assert decode_ready(message(**{message.DESCRIPTOR.fields[0].name: value}).SerializeToString()) \
        is value


def test_server_metadata_round_trips():
    meta = ServerMetadata("caliper", "0.1.0", ("binary_tensor_data",))
    assert decode_server_metadata_response(encode_server_metadata_response(meta)) == meta

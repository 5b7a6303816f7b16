"""Open Inference Protocol v2 REST codec: JSON tensors, the binary data extension, validation."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from modelcaliper.errors import PayloadTooLargeError, TargetError, WireError
from modelcaliper.wire import Codec, get_codec
from modelcaliper.wire.openinference_rest import HEADER_LENGTH, V2RestCodec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor

NUMERIC = [d for d in DType if d is not DType.BYTES]


def _sample(dtype: DType, shape: tuple[int, ...], *, json_safe: bool) -> np.ndarray:
    """Extreme values of each dtype; ``json_safe`` leaves out what plain JSON cannot carry."""
    n = int(np.prod(shape))
    if dtype is DType.BYTES:
        pool = [b"", b"plain", "é".encode(), b'"quoted\\"', b"\x00nul"]
        if not json_safe:
            pool.append(b"\xff\xfe")
        return as_tensor(np.array([pool[i % len(pool)] for i in range(n)], dtype=object)
                         .reshape(shape))
    if dtype is DType.BOOL:
        return (np.arange(n) % 3 == 0).reshape(shape)
    np_dtype = dtype.numpy
    if np_dtype.kind == "f":
        info = np.finfo(np_dtype)
        pool = [0.0, -0.0, 0.1, -2.5, float(info.max), float(info.tiny),
                float(info.smallest_subnormal)]
        if not json_safe:
            pool += [np.nan, np.inf, -np.inf]
    else:
        info = np.iinfo(np_dtype)
        pool = [0, 1, int(info.min), int(info.max), 42]
    return np.array([pool[i % len(pool)] for i in range(n)], dtype=np_dtype).reshape(shape)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return b.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _round_trip(binary, inputs, **fields):
    codec = V2RestCodec(binary)
    encoded = codec.encode_request(InferRequest(inputs, **fields))
    return encoded, codec.decode_request(encoded.body, dict(encoded.headers))


# ------------------------------------------------------------------------ the codec object


@pytest.mark.parametrize(("binary", "name"), [(False, "v2-rest json"), (True, "v2-rest binary")])
def test_codec_identity(binary, name):
    codec = get_codec(name)
    assert isinstance(codec, V2RestCodec) and isinstance(codec, Codec)
    assert codec.binary is binary and codec.name == name and codec.transport == "http"


def test_path_of_a_request():
    codec = V2RestCodec()
    assert codec.path(InferRequest({"x": [1]}, model_name="m")) == "/v2/models/m/infer"
    assert codec.path(InferRequest({"x": [1]}, model_name="m", model_version="2")) == (
        "/v2/models/m/versions/2/infer")


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_every_dtype_round_trips_bit_exactly(binary, dtype):
    inputs = {"a": _sample(dtype, (3, 4), json_safe=not binary),
              "b": _sample(dtype, (), json_safe=not binary),  # a 0-d tensor
              "c": _sample(dtype, (2, 0), json_safe=not binary)}  # zero-size
    _, decoded = _round_trip(binary, inputs)
    for name, arr in inputs.items():
        assert _same(decoded.inputs[name], arr), name


def test_json_body_layout():
    inputs = {"x": np.array([[1, 2], [3, 4]], np.int32), "s": as_tensor(["a", ""])}
    encoded, _ = _round_trip(False, inputs, request_id="r1", parameters={"priority": 2},
                             outputs=["y"])
    assert encoded.header("content-type") == "application/json"
    assert encoded.header(HEADER_LENGTH) is None
    assert orjson.loads(encoded.body) == {
        "id": "r1",
        "parameters": {"priority": 2},
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]},  # flat
            {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", ""]},
        ],
        "outputs": [{"name": "y"}],
    }


def test_binary_body_layout():
    inputs = {"x": np.array([1.5, -2.0], np.float32), "s": as_tensor([b"ab", b""])}
    encoded, _ = _round_trip(True, inputs)
    assert encoded.header("content-type") == "application/octet-stream"
    length = int(encoded.header(HEADER_LENGTH))
    header, tail = orjson.loads(encoded.body[:length]), encoded.body[length:]
    assert header == {
        "parameters": {"binary_data_output": True},  # all outputs binary, please
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "s", "shape": [2], "datatype": "BYTES",
             "parameters": {"binary_data_size": 10}},
        ],
    }
    assert tail == struct.pack("<2f", 1.5, -2.0) + b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_binary_mode_asks_for_binary_outputs_by_name_when_it_names_them():
    encoded, decoded = _round_trip(True, {"x": [1.0]}, outputs=["y", "z"])
    length = int(encoded.header(HEADER_LENGTH))
    assert orjson.loads(encoded.body[:length])["outputs"] == [
        {"name": "y", "parameters": {"binary_data": True}},
        {"name": "z", "parameters": {"binary_data": True}},
    ]
    assert decoded.outputs == ["y", "z"]
    assert decoded.wire == {"binary_data_output": False, "binary_outputs": {"y": True, "z": True}}


def test_nested_data_is_accepted_when_decoding():
    body = (b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", '
            b'"data": [[1, 2], [3, 4]]}]}')
    assert V2RestCodec().decode_request(body).inputs["x"].tolist() == [[1, 2], [3, 4]]


def test_json_and_binary_tensors_mix_in_one_body():
    header = orjson.dumps({"inputs": [
        {"name": "a", "shape": [2], "datatype": "INT8", "parameters": {"binary_data_size": 2}},
        {"name": "b", "shape": [1], "datatype": "BOOL", "data": [True]},
        {"name": "c", "shape": [1], "datatype": "UINT16", "parameters": {"binary_data_size": 2}},
    ]})
    body = header + b"\x01\xff" + b"\x05\x00"
    decoded = V2RestCodec().decode_request(body, {HEADER_LENGTH: str(len(header))})
    assert decoded.inputs["a"].tolist() == [1, -1]
    assert decoded.inputs["b"].tolist() == [True]
    assert decoded.inputs["c"].tolist() == [5]


def test_header_names_are_case_insensitive():
    encoded, _ = _round_trip(True, {"x": [1.0]})
    headers = {"Inference-Header-Content-Length": encoded.header(HEADER_LENGTH)}
    assert V2RestCodec().decode_request(encoded.body, headers).inputs["x"].tolist() == [1.0]


def test_path_fills_model_and_version():
    body = b'{"id": 7, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    decoded = V2RestCodec().decode_request(body, path="/v2/models/ranker/versions/3/infer")
    assert (decoded.model_name, decoded.model_version, decoded.request_id) == ("ranker", "3", "7")
    with pytest.raises(WireError, match="infer"):
        V2RestCodec().decode_request(body, path="/v2/models/ranker/ready")


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"x": np.array([1.0, np.nan], np.float32)}, "NaN or infinity"),
        ({"x": np.array([[np.inf]], np.float64)}, "NaN or infinity"),
        ({"x": np.array([-np.inf], np.float16)}, "NaN or infinity"),
        ({"s": as_tensor([b"\xff"])}, "not valid UTF-8"),
    ],
)
def test_plain_json_refuses_what_it_cannot_carry_and_points_to_binary(inputs, fragment):
    with pytest.raises(WireError) as info:
        V2RestCodec(binary=False).encode_request(InferRequest(inputs))
    assert fragment in str(info.value) and "'v2-rest binary'" in str(info.value)
    assert info.value.tensor == next(iter(inputs))
    _, decoded = _round_trip(True, inputs)  # ...which does carry it, bit for bit
    assert _same(decoded.inputs[next(iter(inputs))], next(iter(inputs.values())))


def test_nan_payloads_and_signs_survive_binary():
    bits = np.array([0x7FC00001, 0xFFC00000, 0x7F800001, 0x80000000], np.uint32)
    arr = bits.view(np.float32)
    _, decoded = _round_trip(True, {"x": arr})
    assert decoded.inputs["x"].view(np.uint32).tolist() == bits.tolist()


# ------------------------------------------------------------------------ responses


def _decoded_request(outputs=None, parameters=None):
    doc = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    if outputs is not None:
        doc["outputs"] = outputs
    if parameters is not None:
        doc["parameters"] = parameters
    return V2RestCodec().decode_request(orjson.dumps(doc))


RESPONSE = InferResponse({"y": np.array([0.25, 0.5], np.float32), "z": as_tensor(["a", "b"])},
                         model_name="ranker", model_version="3", request_id="r9")


def _binary_outputs(encoded):
    length = encoded.header(HEADER_LENGTH)
    header = orjson.loads(encoded.body[: int(length)] if length else encoded.body)
    return {o["name"]: "binary_data_size" in o.get("parameters", {}) for o in header["outputs"]}


@pytest.mark.parametrize(
    ("outputs", "parameters", "expected"),
    [
        (None, None, {"y": False, "z": False}),  # a plain JSON client gets JSON
        (None, {"binary_data_output": True}, {"y": True, "z": True}),  # all binary
        ([{"name": "y", "parameters": {"binary_data": True}}], None, {"y": True, "z": False}),
        ([{"name": "y", "parameters": {"binary_data": False}}], {"binary_data_output": True},
         {"y": False, "z": True}),  # a per-output choice beats the request-wide one
    ],
)
def test_server_answers_binary_exactly_where_asked(outputs, parameters, expected):
    request = _decoded_request(outputs, parameters)
    encoded = V2RestCodec().encode_response(RESPONSE, request)
    assert _binary_outputs(encoded) == expected
    content_type = "application/octet-stream" if any(expected.values()) else "application/json"
    assert encoded.header("content-type") == content_type
    decoded = V2RestCodec().decode_response(encoded.body, dict(encoded.headers))
    assert (decoded.model_name, decoded.model_version, decoded.request_id) == ("ranker", "3", "r9")
    for name, arr in RESPONSE.outputs.items():
        assert _same(decoded.outputs[name], arr)


def test_without_a_request_the_codec_mode_decides():
    assert _binary_outputs(V2RestCodec(True).encode_response(RESPONSE)) == {"y": True, "z": True}
    assert _binary_outputs(V2RestCodec(False).encode_response(RESPONSE)) == {"y": False,
                                                                              "z": False}


def test_error_bodies_carry_the_server_message():
    codec = V2RestCodec(True)
    encoded = codec.encode_error("unknown model 'x'")
    assert encoded.body == b'{"error":"unknown model \'x\'"}'
    assert codec.decode_error(encoded.body) == "unknown model 'x'"
    with pytest.raises(TargetError, match="unknown model"):
        codec.decode_response(encoded.body)
    assert codec.decode_error(b"not json") is None


# ------------------------------------------------------------------------ malformed bodies


def _tensor(**fields):
    return {"name": "t", "shape": [2], "datatype": "FP32", **fields}


def _body(*tensors, tail=b"", declared=None):
    header = orjson.dumps({"inputs": list(tensors)})
    length = len(header) if declared is None else declared
    return header + tail, ({HEADER_LENGTH: str(length)} if tail or declared is not None else {})


@pytest.mark.parametrize(
    ("body", "error", "tensor", "fragment"),
    [
        (_body(_tensor(data=[1.0])), WireError, "t", "needs 2 elements but 'data' holds 1"),
        (_body(_tensor(data=[1.0, "x"])), WireError, "t", "datatype FP32 but data holds a string"),
        (_body(_tensor(datatype="INT8", data=[1, 2.5])), WireError, "t", "floating-point"),
        (_body(_tensor(datatype="INT8", data=[1, 200])), WireError, "t", "out of range for INT8"),
        (_body(_tensor(datatype="BOOL", data=[1, 0])), WireError, "t", "datatype BOOL"),
        (_body(_tensor(data=[1.0, None])), WireError, "t", "holds null"),
        (_body(_tensor(data=[[1.0], [2.0, 3.0]])), WireError, "t", "not rectangular"),
        (_body(_tensor(datatype="BF16", data=[1, 2])), WireError, "t", "unknown datatype 'BF16'"),
        (_body(_tensor(datatype="fp32", data=[1, 2])), WireError, "t", "v2 spells it FP32"),
        (_body(_tensor(shape=[-1, 2], data=[1, 2])), WireError, "t", "negative dimension"),
        (_body(_tensor(shape="2", data=[1, 2])), WireError, "t", "list of integers"),
        (_body(_tensor(shape=[True, 2], data=[1, 2])), WireError, "t", "list of integers"),
        (_body(_tensor(shape=[1] * 40, data=[1])), WireError, "t", "at most 32"),
        (_body(_tensor()), WireError, "t", "neither 'data' nor"),
        (_body(_tensor(datatype=None, data=[1, 2])), WireError, "t", "no 'datatype'"),
        (_body(_tensor(data=[1, 2]), _tensor(data=[3, 4])), WireError, "t", "appears twice"),
        (_body(_tensor(data=[1, 2], parameters={"binary_data_size": 8}), tail=b"\x00" * 8),
         WireError, "t", "both 'data' and"),
        (_body(_tensor(parameters={"binary_data_size": 8}), tail=b"\x00" * 7), WireError, "t",
         "binary_data_size 8 is larger than the 7 bytes left"),  # truncated section
        (_body(_tensor(parameters={"binary_data_size": 2**40}), tail=b"\x00" * 8), WireError,
         "t", "larger than the 8 bytes left"),  # no allocation from a declared size
        (_body(_tensor(parameters={"binary_data_size": 4}), tail=b"\x00" * 4), WireError, "t",
         "needs 8"),  # size does not match the shape
        (_body(_tensor(parameters={"binary_data_size": -8}), tail=b"\x00" * 8), WireError, "t",
         "non-negative integer"),
        (_body(_tensor(parameters={"binary_data_size": 8}), tail=b"\x00" * 9), WireError, None,
         "1 bytes after the last binary tensor"),
        (_body(_tensor(datatype="BYTES", shape=[1], parameters={"binary_data_size": 6}),
               tail=b"\x05\x00\x00\x00ab"), WireError, "t",
         "declares 5 bytes but only 2 remain"),  # a BYTES element cut short
        (_body(_tensor(datatype="BYTES", parameters={"binary_data_size": 9}),
               tail=b"\x05\x00\x00\x00abcde"), WireError, "t",
         "ends inside the length of element 1"),  # the second element is missing
        (_body(_tensor(datatype="BYTES", shape=[10**9], parameters={"binary_data_size": 8}),
               tail=b"\x00" * 8), PayloadTooLargeError, "t", "declares 1000000000 strings"),
        (_body(_tensor(parameters={"shared_memory_region": "r"})), WireError, "t", "shared-memory"),
        (_body(_tensor(parameters=5, data=[1, 2])), WireError, "t", "'parameters' must be"),
        (_body(_tensor(data=[1, 2]), declared=10**6), WireError, None,
         "does not fit the"),  # header length beyond the body
        (_body(_tensor(data=[1, 2]), declared=-1), WireError, None, "does not fit the"),
        ((b"{}", {HEADER_LENGTH: "ten"}), WireError, None, "not a number"),
        ((b'{"inputs": 5}', {}), WireError, None, "'inputs' list"),
        ((b'{"inputs": [5]}', {}), WireError, None, "inputs[0] is not an object"),
        ((b'{"inputs": [], "outputs": 5}', {}), WireError, None, "'outputs' must be a list"),
        ((b'{"inputs": [], "outputs": [{"id": 1}]}', {}), WireError, None, "needs a 'name'"),
        ((b'{"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}', {}),
         WireError, "y", "true or false"),
        ((b'{"inputs": [], "parameters": {"binary_data_output": "yes"}}', {}), WireError, None,
         "binary_data_output"),
        ((b'{"inputs": [], "parameters": []}', {}), WireError, None, "'parameters' must be"),
        ((b'{"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [NaN]}]}', {}),
         WireError, None, "'v2-rest binary'"),  # a NaN token in plain JSON
        ((b"[]", {}), WireError, None, "JSON object"),
    ],
)
def test_malformed_requests_are_rejected_naming_the_tensor(body, error, tensor, fragment):
    payload, headers = body
    with pytest.raises(error) as info:
        V2RestCodec().decode_request(payload, headers)
    assert fragment in str(info.value)
    assert info.value.tensor == tensor
    assert "\n" not in str(info.value)


def test_oversize_body_is_refused():
    with pytest.raises(PayloadTooLargeError):
        V2RestCodec(max_body_bytes=16).decode_request(b'{"inputs": []}' + b" " * 16)


def test_malformed_responses_are_rejected():
    with pytest.raises(WireError, match="'outputs' list"):
        V2RestCodec().decode_response(b'{"model_name": "m"}')
    with pytest.raises(WireError, match="parameters"):
        V2RestCodec().decode_response(b'{"outputs": [], "parameters": 3}')

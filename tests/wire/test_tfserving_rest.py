"""TF Serving REST predict codec: row and columnar requests, responses, errors, validation."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelcaliper.errors import PayloadTooLargeError, TargetError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire import Codec, get_codec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor
from modelcaliper.wire.tfserving_rest import (
    DEFAULT_INPUT_NAME,
    DEFAULT_OUTPUT_NAME,
    TFServingRestCodec,
)

FORMATS = ["rows", "columnar"]
NUMERIC = [d for d in DType if d is not DType.BYTES]


def _sample(dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    """Values that exercise the extremes of each dtype."""
    n = int(np.prod(shape))
    if dtype is DType.BYTES:
        pool = [b"", b"plain", "é".encode(), b"\xff\xfe", b'quote " and \\', b"\x00nul"]
        return as_tensor(np.array([pool[i % len(pool)] for i in range(n)], dtype=object)
                         .reshape(shape))
    if dtype is DType.BOOL:
        return (np.arange(n) % 2 == 0).reshape(shape)
    np_dtype = dtype.numpy
    if np_dtype.kind == "f":
        info = np.finfo(np_dtype)
        pool = [0.0, -0.0, 1.5, -1e-3, float(info.max), float(info.tiny), np.nan, np.inf,
                -np.inf, 0.1]
    else:
        info = np.iinfo(np_dtype)
        pool = [0, 1, int(info.min), int(info.max), 7]
    return np.array([pool[i % len(pool)] for i in range(n)], dtype=np_dtype).reshape(shape)


def _signature(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None):
    def specs(arrays):
        return tuple(TensorSpec(n, DType.BYTES if a.dtype == object else a.dtype.name,
                                (-1,) * max(a.ndim, 1)) for n, a in arrays.items())

    return Signature(inputs=specs(inputs), outputs=specs(outputs or {}))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _round_trip(fmt, inputs, **request_fields):
    codec = TFServingRestCodec(fmt, signature=_signature(inputs))
    encoded = codec.encode_request(InferRequest(inputs, **request_fields))
    assert encoded.header("content-type") == "application/json"
    return encoded, codec.decode_request(encoded.body, dict(encoded.headers))


# ------------------------------------------------------------------------ the codec object


@pytest.mark.parametrize("fmt", FORMATS)
def test_codec_identity(fmt):
    codec = get_codec(f"tfserving-rest {fmt}")
    assert isinstance(codec, TFServingRestCodec) and isinstance(codec, Codec)
    assert codec.name == f"tfserving-rest {fmt}" and codec.transport == "http"
    assert codec.format == fmt


def test_unknown_format_is_refused():
    with pytest.raises(WireError, match="rows"):
        TFServingRestCodec("diagonal")  # type: ignore[arg-type]


def test_path_of_a_request_uses_version_or_label():
    codec = TFServingRestCodec()
    assert codec.path(InferRequest({"x": [1]}, model_name="m")) == "/v1/models/m:predict"
    assert codec.path(InferRequest({"x": [1]}, model_name="m", model_version="4")) == (
        "/v1/models/m/versions/4:predict")
    assert codec.path(InferRequest({"x": [1]}, model_name="m", version_label="canary")) == (
        "/v1/models/m/labels/canary:predict")


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_every_dtype_round_trips_bit_exactly(fmt, dtype):
    inputs = {"a": _sample(dtype, (4, 3)), "b": _sample(dtype, (4,))}
    _, decoded = _round_trip(fmt, inputs)
    for name, arr in inputs.items():
        assert _same(decoded.inputs[name], arr), name


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_a_single_input_round_trips_as_a_bare_value(fmt, dtype):
    inputs = {"only": _sample(dtype, (3, 2))}
    encoded, decoded = _round_trip(fmt, inputs)
    body = orjson.loads(encoded.body.replace(b"NaN", b"0").replace(b"Infinity", b"0"))
    assert isinstance(body["instances" if fmt == "rows" else "inputs"], list)  # no name
    assert _same(decoded.inputs["only"], inputs["only"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_mixed_dtypes_and_shapes_in_one_request(fmt):
    # runs of 1-D tensors of one dtype, broken by strings and by a 3-D tensor
    inputs = {
        "f1": _sample(DType.FP32, (5,)),
        "f2": _sample(DType.FP32, (5,)),
        "i1": _sample(DType.INT64, (5,)),
        "s1": _sample(DType.BYTES, (5,)),
        "img_bytes": _sample(DType.BYTES, (5,)),
        "cube": _sample(DType.FP16, (5, 2, 3)),
        "f3": _sample(DType.FP32, (5,)),
        "flags": _sample(DType.BOOL, (5, 1)),
    }
    encoded, decoded = _round_trip(fmt, inputs)
    assert list(decoded.inputs) == list(inputs)  # input order is kept
    for name, arr in inputs.items():
        assert _same(decoded.inputs[name], arr), name


def test_row_format_body_has_one_object_per_row():
    inputs = {"tag": as_tensor(["foo", "bar"]), "signal": np.array([[1, 2], [3, 4]], np.int32),
              "w": np.array([0.5, np.nan], np.float32)}
    encoded, _ = _round_trip("rows", inputs, signature_name="serving_default")
    assert encoded.body == (
        b'{"signature_name":"serving_default","instances":['
        b'{"tag":"foo","signal":[1,2],"w":0.5},{"tag":"bar","signal":[3,4],"w":NaN}]}'
    )


@pytest.mark.parametrize(
    "values",
    [
        [b"100%", b"%s%b"],  # percent signs in plain ASCII text
        [b'say "hi"', b"back\\slash"],  # characters JSON must escape
        [b"tab\there", "naïve".encode()],  # a control character and non-ASCII text
        [b"\xff", b"ok"],  # not UTF-8 at all
    ],
)
def test_row_format_writes_any_text_and_any_name(values):
    # names with '%' and quotes, around a run of numbers and a run of strings
    inputs = {'w%d"': np.array([1.5, 2.5], np.float32), "n%": np.array([1, 2], np.int8),
              "s%b": as_tensor(np.array(values, dtype=object)), "t": as_tensor(["x", "y"])}
    encoded, decoded = _round_trip("rows", inputs)
    rows = orjson.loads(encoded.body)["instances"]  # valid JSON, one object per row
    assert [list(row) for row in rows] == [list(inputs)] * 2
    for name, arr in inputs.items():
        assert _same(decoded.inputs[name], arr), name


def test_columnar_body_keys_tensors_by_name():
    inputs = {"tag": as_tensor(["foo", "bar"]), "signal": np.array([[1, 2], [3, 4]], np.int32)}
    encoded, _ = _round_trip("columnar", inputs)
    assert encoded.body == b'{"inputs":{"tag":["foo","bar"],"signal":[[1,2],[3,4]]}}'


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("text", [b"hi", b""], ["hi", ""]),  # UTF-8 strings stay strings, empty ones too
        ("text", [b"\xff", b"ok"], [{"b64": "/w=="}, "ok"]),  # non-UTF-8 goes base64
        ("image_bytes", [b"hi"], [{"b64": "aGk="}]),  # *_bytes names are always base64
    ],
)
def test_string_encoding_rules(name, values, expected):
    encoded, decoded = _round_trip("columnar", {name: as_tensor(np.array(values, dtype=object))})
    assert orjson.loads(encoded.body) == {"inputs": expected}
    assert decoded.inputs[name].tolist() == values


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        ("columnar", (0,)),  # empty vector
        ("columnar", (3, 0)),  # zero-size inner dimension
        ("columnar", (0, 4)),  # empty batch in columns (inner size lost, known from nothing)
        ("rows", (3, 0)),  # rows of empty vectors
    ],
)
def test_zero_size_tensors(fmt, shape):
    arr = np.zeros(shape, np.float32)
    encoded, decoded = _round_trip(fmt, {"x": arr, "y": np.zeros(shape, np.int8)})
    expected_shape = shape if shape[0] else (0,)
    assert decoded.inputs["x"].shape == expected_shape and decoded.inputs["x"].dtype == np.float32
    assert decoded.inputs["y"].dtype == np.int8


def test_an_empty_batch_in_rows_takes_shapes_from_the_signature():
    sig = Signature(inputs=(TensorSpec("a", DType.FP32, (-1, 3)), TensorSpec("b", DType.BYTES)))
    codec = TFServingRestCodec("rows", signature=sig)
    inputs = {"a": np.zeros((0, 3), np.float32), "b": as_tensor(np.zeros(0, dtype=object))}
    encoded = codec.encode_request(InferRequest(inputs))
    assert encoded.body == b'{"instances":[]}'
    decoded = codec.decode_request(encoded.body)
    assert decoded.inputs["a"].shape == (0, 3) and decoded.inputs["a"].dtype == np.float32
    assert decoded.inputs["b"].shape == (0,) and decoded.inputs["b"].dtype == object


def test_without_a_signature_numbers_decode_as_int64_or_float64():
    codec = TFServingRestCodec("columnar")
    decoded = codec.decode_request(b'{"inputs": {"i": [1, 2], "f": [1, 2.5], "b": [true]}}')
    assert decoded.inputs["i"].dtype == np.int64
    assert decoded.inputs["f"].dtype == np.float64
    assert decoded.inputs["b"].dtype == np.bool_


def test_bare_values_get_the_signature_name_or_a_default():
    assert list(TFServingRestCodec().decode_request(b'{"instances": [1, 2]}').inputs) == [
        DEFAULT_INPUT_NAME]
    sig = Signature(inputs=(TensorSpec("x", DType.INT8),))
    decoded = TFServingRestCodec(signature=sig).decode_request(b'{"instances": [1, 2]}')
    assert decoded.inputs["x"].dtype == np.int8


def test_path_fills_model_version_label_and_format_hint():
    codec = TFServingRestCodec("columnar")
    body = b'{"signature_name": "sig", "instances": [[1.0]]}'
    decoded = codec.decode_request(body, path="/v1/models/ranker/versions/12:predict")
    assert (decoded.model_name, decoded.model_version, decoded.version_label) == ("ranker", "12",
                                                                                  None)
    assert decoded.signature_name == "sig" and decoded.wire == {"format": "rows"}
    decoded = codec.decode_request(body, path="/v1/models/ranker/labels/stable:predict")
    assert (decoded.model_version, decoded.version_label) == (None, "stable")


def test_a_path_for_another_verb_is_refused():
    with pytest.raises(WireError, match="predict"):
        TFServingRestCodec().decode_request(b'{"instances": [1]}', path="/v1/models/m:regress")


# ------------------------------------------------------------------------ malformed requests


SIG = Signature(inputs=(TensorSpec("x", DType.FP32), TensorSpec("y", DType.BYTES)))


@pytest.mark.parametrize(
    ("body", "error", "tensor", "fragment"),
    [
        (b'{"instances": [{"x": [1, 2], "y": "a"}, {"x": [3], "y": "b"}]}', WireError, "x",
         "not rectangular"),  # ragged across rows
        (b'{"instances": [{"x": 1, "y": "a"}, {"x": 2}]}', WireError, "y", "row 1 has keys"),
        (b'{"instances": [{"x": 1, "y": "a"}, {"x": 2, "y": "b", "z": 3}]}', WireError, "z",
         "row 1 has keys"),  # an extra key
        (b'{"instances": [{"x": 1, "y": "a"}, 5]}', WireError, None, "row 1 is not an object"),
        (b'{"inputs": {"x": [1], "y": [{"b64": "@@@"}]}}', WireError, "y", "invalid base64"),
        (b'{"inputs": {"x": ["one"], "y": ["a"]}}', WireError, "x",
         "datatype FP32 but data holds a string"),  # wrong type per the signature
        (b'{"inputs": {"x": [1], "y": [2]}}', WireError, "y", "datatype BYTES but data holds"),
        (b'{"inputs": {"x": [null], "y": ["a"]}}', WireError, "x", "holds null"),
        (b'{"inputs": {"x": [true], "y": ["a"]}}', WireError, "x", "holds a boolean"),
        (b'{"instances": [1], "inputs": [1]}', WireError, None, "both"),
        (b'{"signature_name": "s"}', WireError, None, "neither"),
        (b'{"instances": 5}', WireError, None, "must be a list"),
        (b'{"inputs": {}}', WireError, None, "empty object"),
        (b'[1, 2]', WireError, None, "JSON object"),
        (b'{"instances": [1', WireError, None, "not valid JSON"),
        (b'{"signature_name": 3, "instances": [1]}', WireError, None, "signature_name"),
        (b'{"instances": [1.0, 2.0]}', WireError, None, "signature has 2"),  # bare but 2 inputs
    ],
)
def test_malformed_requests_are_rejected_naming_the_tensor(body, error, tensor, fragment):
    with pytest.raises(error) as info:
        TFServingRestCodec(signature=SIG).decode_request(body)
    assert fragment in str(info.value)
    assert info.value.tensor == tensor
    if tensor is not None:
        assert f"'{tensor}'" in str(info.value)


def test_ragged_bare_instances_are_refused():
    with pytest.raises(WireError) as info:
        TFServingRestCodec().decode_request(b'{"instances": [[1, 2], [3]]}')
    assert info.value.tensor == DEFAULT_INPUT_NAME and "not rectangular" in str(info.value)


def test_oversize_body_is_refused_before_parsing():
    codec = TFServingRestCodec(max_body_bytes=10)
    with pytest.raises(PayloadTooLargeError):
        codec.decode_request(b'{"instances": [1, 2, 3]}')


@pytest.mark.parametrize(
    ("inputs", "tensor", "fragment"),
    [
        ({"s": np.array(1.0)}, "s", "scalar"),  # rows need a batch dimension
        ({"a": np.zeros(2), "b": np.zeros(3)}, "b", "first dimension"),  # batch sizes differ
        ({"a": np.zeros(2), "b": np.array(1.0)}, "b", "first dimension"),
    ],
)
def test_row_format_refuses_tensors_without_a_shared_batch(inputs, tensor, fragment):
    with pytest.raises(WireError) as info:
        TFServingRestCodec("rows").encode_request(InferRequest(inputs))
    assert info.value.tensor == tensor and fragment in str(info.value)


def test_columnar_format_carries_tensors_of_any_batch():
    inputs = {"a": np.zeros(2), "b": np.array(1.0)}
    codec = TFServingRestCodec("columnar")
    decoded = codec.decode_request(codec.encode_request(InferRequest(inputs)).body)
    assert decoded.inputs["b"].shape == () and decoded.inputs["a"].shape == (2,)


def test_a_request_needs_inputs():
    with pytest.raises(WireError, match="at least one input"):
        TFServingRestCodec().encode_request(InferRequest({}))


# ------------------------------------------------------------------------ responses


def _request(fmt):
    codec = TFServingRestCodec(fmt)
    return codec.decode_request(codec.encode_request(InferRequest({"x": [[1.0]]})).body)


@pytest.mark.parametrize(("fmt", "key"), [("rows", "predictions"), ("columnar", "outputs")])
def test_response_format_follows_the_request(fmt, key):
    server = TFServingRestCodec("columnar" if fmt == "rows" else "rows")  # server default differs
    one = server.encode_response(InferResponse({"score": np.array([0.5, 1.5], np.float32)}),
                                 _request(fmt))
    assert orjson.loads(one.body) == {key: [0.5, 1.5]}  # a single output goes unnamed
    two = server.encode_response(
        InferResponse({"score": np.array([0.5, 1.5], np.float32), "label": as_tensor(["a", "b"])}),
        _request(fmt))
    expected = ([{"score": 0.5, "label": "a"}, {"score": 1.5, "label": "b"}] if fmt == "rows"
                else {"score": [0.5, 1.5], "label": ["a", "b"]})
    assert orjson.loads(two.body) == {key: expected}


@pytest.mark.parametrize("fmt", FORMATS)
def test_responses_round_trip_with_the_signature(fmt):
    outputs = {"score": _sample(DType.FP64, (3, 2)), "ids": _sample(DType.UINT64, (3,)),
               "why": _sample(DType.BYTES, (3,))}
    sig = _signature({"x": np.zeros(1)}, outputs)
    codec = TFServingRestCodec(fmt, signature=sig)
    encoded = codec.encode_response(InferResponse(outputs))
    decoded = codec.decode_response(encoded.body, dict(encoded.headers))
    for name, arr in outputs.items():
        assert _same(decoded.outputs[name], arr), name


def test_single_unnamed_output_takes_the_signature_name_or_a_default():
    body = b'{"predictions": [3.5, 4.0, 5.5]}'
    assert list(TFServingRestCodec().decode_response(body).outputs) == [DEFAULT_OUTPUT_NAME]
    sig = Signature(inputs=(TensorSpec("x", DType.FP32),), outputs=(TensorSpec("y", DType.FP32),))
    decoded = TFServingRestCodec(signature=sig).decode_response(body)
    assert decoded.outputs["y"].tolist() == [3.5, 4.0, 5.5]


def test_row_response_refuses_outputs_of_different_batch_sizes():
    with pytest.raises(WireError) as info:
        TFServingRestCodec().encode_response(
            InferResponse({"a": np.zeros(2), "b": np.zeros(3)}), _request("rows"))
    assert info.value.tensor == "b"


def test_error_bodies_carry_the_server_message():
    codec = TFServingRestCodec()
    encoded = codec.encode_error("Servable not found for request: Latest(half)")
    assert encoded.body == b'{"error":"Servable not found for request: Latest(half)"}'
    assert codec.decode_error(encoded.body) == "Servable not found for request: Latest(half)"
    with pytest.raises(TargetError, match="Latest\\(half\\)"):
        codec.decode_response(encoded.body)
    assert codec.decode_error(b'{"predictions": [1]}') is None
    assert codec.decode_error(b"<html>502</html>") is None


def test_a_response_without_a_known_key_is_refused():
    with pytest.raises(WireError, match="predictions"):
        TFServingRestCodec().decode_response(b'{"result": [1]}')

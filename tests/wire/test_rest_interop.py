"""Cross-checks against outside references.

* v2 REST: ``tritonclient.http`` builds request bodies that we must parse, and parses the
  response bodies we build; both directions, JSON and binary, every datatype it supports.
* TF Serving REST has no official client library, so the examples of TF Serving's REST API
  documentation (tensorflow_serving/g3doc/api_rest.md) serve as golden bodies.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelcaliper.errors import TargetError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.openinference_rest import HEADER_LENGTH, V2RestCodec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor, dtype_of
from modelcaliper.wire.tfserving_rest import TFServingRestCodec
from modelcaliper.wire.tfserving_rest_meta import (
    ModelVersionStatus,
    decode_model_metadata,
    decode_model_status,
)

httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.interop

Client = httpclient.InferenceServerClient


def _array(dtype: DType, shape: tuple[int, ...], *, utf8_only: bool) -> np.ndarray:
    n = int(np.prod(shape))
    if dtype is DType.BYTES:
        pool = [b"alpha", b"", "ünï".encode(), b'q"uote']
        if not utf8_only:
            pool.append(b"\x80\xff")
        return as_tensor(np.array([pool[i % len(pool)] for i in range(n)], dtype=object)
                         .reshape(shape))
    if dtype is DType.BOOL:
        return (np.arange(n) % 2 == 1).reshape(shape)
    if dtype.is_float:
        info = np.finfo(dtype.numpy)
        pool = [0.1, -1.5, float(info.max), float(info.tiny), -0.0, 3.0]
    else:
        info = np.iinfo(dtype.numpy)
        pool = [int(info.min), int(info.max), 0, 1]
    return np.array([pool[i % len(pool)] for i in range(n)], dtype=dtype.numpy).reshape(shape)


def _same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    if ours.dtype == object:
        # tritonclient returns str for JSON BYTES and bytes for binary BYTES
        back = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in theirs.flat]
        return ours.shape == theirs.shape and ours.reshape(-1).tolist() == back
    return (ours.shape == theirs.shape and ours.dtype == theirs.dtype
            and ours.tobytes() == np.ascontiguousarray(theirs).tobytes())


SHAPES = [(2, 3), (4,), (0,), (2, 0)]


def _triton_body(arrays, *, binary, outputs=None, **kw):
    inputs = []
    for name, arr in arrays.items():
        datatype = dtype_of(arr).v2
        inp = httpclient.InferInput(name, list(arr.shape), datatype)
        inp.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(inp)
    body, json_size = Client.generate_request_body(inputs, outputs=outputs, **kw)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return body, headers


# ------------------------------------------------------------------------ tritonclient -> us


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_we_parse_tritonclient_requests(binary, dtype):
    arrays = {f"in{i}": _array(dtype, shape, utf8_only=not binary)
              for i, shape in enumerate(SHAPES)}
    body, headers = _triton_body(arrays, binary=binary, request_id="req-1",
                                 parameters={"my_flag": 3})
    decoded = V2RestCodec().decode_request(body, headers)
    assert decoded.request_id == "req-1" and decoded.parameters == {"my_flag": 3}
    for name, arr in arrays.items():
        got = decoded.inputs[name]
        assert got.shape == arr.shape and got.dtype == arr.dtype, name
        assert (got.tolist() == arr.tolist()) if arr.dtype == object else (
            got.tobytes() == arr.tobytes()), name


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_output_requests_become_wire_hints(binary):
    arrays = {"x": np.ones((1, 2), np.float32)}
    outputs = [httpclient.InferRequestedOutput("a", binary_data=True),
               httpclient.InferRequestedOutput("b", binary_data=False)]
    body, headers = _triton_body(arrays, binary=binary, outputs=outputs)
    decoded = V2RestCodec().decode_request(body, headers)
    assert decoded.outputs == ["a", "b"]
    assert decoded.wire == {"binary_data_output": False, "binary_outputs": {"a": True, "b": False}}
    # with no outputs named, tritonclient asks for every output in binary
    body, headers = _triton_body(arrays, binary=binary)
    assert V2RestCodec().decode_request(body, headers).wire["binary_data_output"] is True


def test_tritonclient_json_nan_is_refused_with_a_pointer_to_binary():
    # tritonclient writes NaN with Python's json module; plain JSON v2 has no such token
    body, headers = _triton_body({"x": np.array([np.nan], np.float32)}, binary=False)
    with pytest.raises(WireError, match="v2-rest binary"):
        V2RestCodec().decode_request(body, headers)


@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_our_binary_request_matches_tritonclient_byte_for_byte_after_the_header(dtype):
    arrays = {f"in{i}": _array(dtype, shape, utf8_only=False) for i, shape in enumerate(SHAPES)}
    theirs, their_headers = _triton_body(arrays, binary=True)
    ours = V2RestCodec(True).encode_request(InferRequest(arrays))
    their_len = int(their_headers["Inference-Header-Content-Length"])
    our_len = int(ours.header(HEADER_LENGTH))
    assert orjson.loads(ours.body[:our_len]) == orjson.loads(theirs[:their_len])
    assert ours.body[our_len:] == theirs[their_len:]


@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_our_json_request_matches_tritonclient_inputs(dtype):
    arrays = {f"in{i}": _array(dtype, shape, utf8_only=True) for i, shape in enumerate(SHAPES)}
    theirs, _ = _triton_body(arrays, binary=False)
    ours = V2RestCodec(False).encode_request(InferRequest(arrays)).body
    their_inputs = orjson.loads(theirs)["inputs"]
    our_inputs = orjson.loads(ours)["inputs"]
    for a, b in zip(our_inputs, their_inputs, strict=True):
        assert {k: a[k] for k in ("name", "shape", "datatype")} == {
            k: b[k] for k in ("name", "shape", "datatype")}
        # the same numbers, though each side may spell them differently (0.1 vs 0.10000000149)
        got = np.array(a["data"], dtype=object if dtype is DType.BYTES else dtype.numpy)
        want = np.array(b["data"], dtype=object if dtype is DType.BYTES else dtype.numpy)
        assert got.tolist() == want.tolist()


# ------------------------------------------------------------------------ us -> tritonclient


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", list(DType), ids=lambda d: d.v2)
def test_tritonclient_parses_our_responses(binary, dtype):
    outputs = {f"out{i}": _array(dtype, shape, utf8_only=not binary)
               for i, shape in enumerate(SHAPES)}
    response = InferResponse(outputs, model_name="ranker", model_version="2", request_id="r7")
    request_body, headers = _triton_body({"x": np.ones(1, np.float32)}, binary=True,
                                         outputs=[httpclient.InferRequestedOutput(n, binary)
                                                  for n in outputs])
    request = V2RestCodec().decode_request(request_body, headers)
    encoded = V2RestCodec().encode_response(response, request)
    length = encoded.header(HEADER_LENGTH)
    result = Client.parse_response_body(encoded.body,
                                        header_length=None if length is None else int(length))
    assert result.get_response()["model_name"] == "ranker"
    assert result.get_response()["id"] == "r7"
    for name, arr in outputs.items():
        assert _same(arr, result.as_numpy(name)), name


def test_tritonclient_reads_mixed_json_and_binary_outputs():
    outputs = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": as_tensor(["x", "yz"]),
               "c": np.array([0.5], np.float64)}
    request_body, headers = _triton_body(
        {"x": np.ones(1, np.float32)}, binary=False,
        outputs=[httpclient.InferRequestedOutput("a", binary_data=True),
                 httpclient.InferRequestedOutput("b", binary_data=False),
                 httpclient.InferRequestedOutput("c", binary_data=True)])
    request = V2RestCodec().decode_request(request_body, headers)
    encoded = V2RestCodec().encode_response(InferResponse(outputs), request)
    result = Client.parse_response_body(encoded.body,
                                        header_length=int(encoded.header(HEADER_LENGTH)))
    for name, arr in outputs.items():
        assert _same(arr, result.as_numpy(name)), name


# ------------------------------------------------------------------------ TF Serving docs

# Bodies from TF Serving's REST API documentation, quoted as the documentation gives them
# (two typos in it are fixed and marked).

HALF_PLUS_THREE = Signature(inputs=(TensorSpec("x", DType.FP32),),
                            outputs=(TensorSpec("y", DType.FP32),))


def test_doc_predict_example_half_plus_three():
    codec = TFServingRestCodec("rows", signature=HALF_PLUS_THREE)
    request = codec.decode_request(b'{"instances": [1.0,2.0,5.0]}',
                                   path="/v1/models/saved_model_half_plus_three:predict")
    assert request.model_name == "saved_model_half_plus_three"
    assert request.inputs["x"].tolist() == [1.0, 2.0, 5.0]
    assert request.inputs["x"].dtype == np.float32
    encoded = codec.encode_response(InferResponse({"y": np.float32([3.5, 4.0, 5.5])}), request)
    assert orjson.loads(encoded.body) == orjson.loads(b'{"predictions": [3.5, 4.0, 5.5]}')
    # and the client side reads the documented answer
    answer = b'{\n    "predictions": [3.5, 4.0, 5.5]\n}'
    assert codec.decode_response(answer).outputs["y"].tolist() == [3.5, 4.0, 5.5]
    assert orjson.loads(codec.encode_request(request).body) == {"instances": [1.0, 2.0, 5.0]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # "List of 3 scalar tensors."
        (b'{"instances": [ "foo", "bar", "baz" ]}', as_tensor(["foo", "bar", "baz"])),
        # "List of 2 tensors each of [1, 2] shape"
        (b'{"instances": [ [[1, 2]], [[3, 4]] ]}', np.array([[[1, 2]], [[3, 4]]], np.int64)),
    ],
)
def test_doc_single_input_row_examples(body, expected):
    codec = TFServingRestCodec("rows")
    got = codec.decode_request(body).inputs["inputs"]
    assert got.shape == expected.shape and got.tolist() == expected.tolist()
    assert orjson.loads(codec.encode_request(InferRequest({"in": expected})).body) == (
        orjson.loads(body))


# The documentation's second instance reads "signal": [3, 4, 1, 2, 5]], with a stray bracket.
DOC_ROWS = b"""{
 "instances": [
   {
     "tag": "foo",
     "signal": [1, 2, 3, 4, 5],
     "sensor": [[1, 2], [3, 4]]
   },
   {
     "tag": "bar",
     "signal": [3, 4, 1, 2, 5],
     "sensor": [[4, 5], [6, 8]]
   }
 ]
}"""

DOC_COLUMNS = b"""{
 "inputs": {
   "tag": ["foo", "bar"],
   "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
   "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
 }
}"""

DOC_TENSORS = {
    "tag": as_tensor(["foo", "bar"]),
    "signal": np.array([[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]], np.int32),
    "sensor": np.array([[[1, 2], [3, 4]], [[4, 5], [6, 8]]], np.int32),
}
DOC_SIGNATURE = Signature(inputs=(TensorSpec("tag", DType.BYTES),
                                  TensorSpec("signal", DType.INT32, (-1, 5)),
                                  TensorSpec("sensor", DType.INT32, (-1, 2, 2))))


@pytest.mark.parametrize(("fmt", "body"), [("rows", DOC_ROWS), ("columnar", DOC_COLUMNS)])
def test_doc_three_input_example_in_both_formats(fmt, body):
    codec = TFServingRestCodec(fmt, signature=DOC_SIGNATURE)
    decoded = codec.decode_request(body)
    assert decoded.wire == {"format": fmt}
    for name, arr in DOC_TENSORS.items():
        got = decoded.inputs[name]
        assert got.shape == arr.shape and got.dtype == arr.dtype and got.tolist() == arr.tolist()
    assert orjson.loads(codec.encode_request(InferRequest(DOC_TENSORS)).body) == orjson.loads(body)


def test_doc_binary_values_example():
    # the documentation's classify example, its instances sent to :predict in row format
    body = b"""{
      "signature_name": "classify_objects",
      "instances": [
        {"image": { "b64": "aW1hZ2UgYnl0ZXM=" }, "caption": "seaside"},
        {"image": { "b64": "YXdlc29tZSBpbWFnZSBieXRlcw==" }, "caption": "mountains"}
      ]
    }"""
    decoded = TFServingRestCodec().decode_request(body)
    assert decoded.signature_name == "classify_objects"
    assert decoded.inputs["image"].tolist() == [b"image bytes", b"awesome image bytes"]
    assert decoded.inputs["caption"].tolist() == [b"seaside", b"mountains"]
    # a tensor named *_bytes is written the way the documentation shows
    encoded = TFServingRestCodec("columnar").encode_request(
        InferRequest({"image_bytes": as_tensor([b"image bytes"])}))
    assert orjson.loads(encoded.body) == {"inputs": [{"b64": "aW1hZ2UgYnl0ZXM="}]}


def test_doc_json_conformance_example():
    # the documentation spells the first token "Nan"; TF Serving's parser wants "NaN"
    body = b'{"instances": [{"sensor_readings": [ 1.0, -3.14, NaN, Infinity ]}]}'
    decoded = TFServingRestCodec().decode_request(body)
    values = decoded.inputs["sensor_readings"][0]
    assert values[0] == 1.0 and values[1] == -3.14 and np.isnan(values[2])
    assert values[3] == np.inf
    again = TFServingRestCodec("rows").encode_request(
        InferRequest({"sensor_readings": values[None, :], "other": np.zeros(1)})).body
    assert b"[1.0,-3.14,NaN,Infinity]" in again


def test_doc_model_status_example():
    body = b"""{
 "model_version_status": [
  {
   "version": "123",
   "state": "AVAILABLE",
   "status": {
    "error_code": "OK",
    "error_message": ""
   }
  }
 ]
}"""
    assert decode_model_status(body) == [ModelVersionStatus("123", "AVAILABLE", "OK", "")]


def test_doc_error_example():
    body = b'{ "error": "Servable not found for request: Latest(half)" }'
    codec = TFServingRestCodec()
    assert codec.decode_error(body) == "Servable not found for request: Latest(half)"
    with pytest.raises(TargetError, match=r"Latest\(half\)"):
        codec.decode_response(body)


def test_metadata_of_a_tf1_model_with_reference_types():
    # the metadata TF Serving returns for the saved_model_counter test model (TF1 graph)
    body = b"""{
"model_spec":{"name": "saved_model_counter", "signature_name": "", "version": "123"},
"metadata": {"signature_def": {"signature_def": {
 "incr_counter_by": {
  "inputs": {"delta": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [], "unknown_rank": true},
                       "name": "delta:0"}},
  "outputs": {"output": {"dtype": "DT_FLOAT_REF",
                         "tensor_shape": {"dim": [], "unknown_rank": false},
                         "name": "incr_counter_by_op/AssignAdd:0"}},
  "method_name": "tensorflow/serving/predict"},
 "get_counter": {
  "inputs": {},
  "outputs": {"output": {"dtype": "DT_FLOAT_REF",
                         "tensor_shape": {"dim": [], "unknown_rank": false},
                         "name": "counter:0"}},
  "method_name": "tensorflow/serving/predict"}}}}}"""
    sig = decode_model_metadata(body, "incr_counter_by")
    assert sig.input("delta").dtype is DType.FP32 and sig.input("delta").options["unknown_rank"]
    assert sig.outputs == (TensorSpec("output", DType.FP32, ()),)  # a scalar
    # no serving_default: the first signature that is not an internal one
    assert decode_model_metadata(body).name == "incr_counter_by"

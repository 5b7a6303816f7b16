"""TF Serving REST paths, model status bodies and model metadata bodies."""

from __future__ import annotations

import orjson
import pytest

from modelcaliper.errors import TargetError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType
from modelcaliper.wire.tfserving_rest_meta import (
    ModelPath,
    ModelVersionStatus,
    decode_model_metadata,
    decode_model_status,
    encode_model_metadata,
    encode_model_status,
    model_path,
    parse_model_path,
    predict_path,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("half",), "/v1/models/half:predict"),  # latest version
        (("half", 123), "/v1/models/half/versions/123:predict"),  # a version number
        (("half", "7"), "/v1/models/half/versions/7:predict"),  # version given as text
        (("half", None, "canary"), "/v1/models/half/labels/canary:predict"),  # a label
    ],
)
def test_predict_path(args, expected):
    assert predict_path(*args) == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("half", 1, "canary"), "not both"),  # version and label at once
        (("half", "v1"), "whole number"),  # versions are numbers
        (("a/b",), "cannot appear"),  # a slash would change the path
        (("", None), "cannot appear"),  # no name
        (("half", None, "x/y"), "cannot appear"),
    ],
)
def test_path_arguments_are_validated(args, fragment):
    with pytest.raises(WireError, match=fragment):
        predict_path(*args)


def test_model_path_is_the_status_url():
    assert model_path("m") == "/v1/models/m"
    assert model_path("m", 2) == "/v1/models/m/versions/2"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/m:predict", ModelPath("m", None, None, "predict")),
        ("/v1/models/m/versions/3:predict", ModelPath("m", "3", None, "predict")),
        ("/v1/models/m/labels/canary:predict", ModelPath("m", None, "canary", "predict")),
        ("/v1/models/m:classify", ModelPath("m", None, None, "classify")),
        ("/v1/models/m/versions/3:regress", ModelPath("m", "3", None, "regress")),
        ("/v1/models/m", ModelPath("m", None, None, "status")),
        ("/v1/models/m/versions/3", ModelPath("m", "3", None, "status")),
        ("/v1/models/m/labels/stable", ModelPath("m", None, "stable", "status")),
        ("/v1/models/m/metadata", ModelPath("m", None, None, "metadata")),
        ("/v1/models/m/versions/9/metadata", ModelPath("m", "9", None, "metadata")),
        ("/v1/models/m:predict?debug=1", ModelPath("m", None, None, "predict")),  # query ignored
    ],
)
def test_parse_model_path(path, expected):
    assert parse_model_path(path) == expected


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v2/models/m/infer", "not a TF Serving REST path"),  # another protocol
        ("/v1/models/m:explain", "unknown verb"),
        ("/v1/models/m/versions/x:predict", "expected /v1/models/NAME"),  # version not a number
        ("/v1/models/m/extra/3:predict", "expected /v1/models/NAME"),
        ("/v1/models/m/versions/1/2:predict", "expected /v1/models/NAME"),
        ("/v1/models/:predict", "model name"),
        ("/v1/models/", "model name"),
    ],
)
def test_bad_paths_are_refused(path, fragment):
    with pytest.raises(WireError, match=fragment):
        parse_model_path(path)


# ------------------------------------------------------------------------ model status


def test_model_status_body_follows_tf_serving():
    encoded = encode_model_status()
    assert encoded.header("content-type") == "application/json"
    assert orjson.loads(encoded.body) == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_model_status_round_trips():
    statuses = [ModelVersionStatus("3", "LOADING"),
                ModelVersionStatus("2", "END", "NOT_FOUND", "gone")]
    assert decode_model_status(encode_model_status(statuses).body) == statuses


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"error": "Could not find any versions of model m"}', TargetError),  # server error
        (b'{"model_version_status": 1}', WireError),  # not a list
        (b'{"model_version_status": [{"state": "AVAILABLE"}]}', WireError),  # no version
    ],
)
def test_bad_status_bodies(body, error):
    with pytest.raises(error):
        decode_model_status(body)


# ------------------------------------------------------------------------ model metadata


SIGNATURE = Signature(
    inputs=(TensorSpec("x", DType.FP32, (-1, 3)), TensorSpec("words", DType.BYTES, (-1,))),
    outputs=(TensorSpec("score", DType.FP64, (-1, 1)),),
)


def test_metadata_body_follows_tf_serving():
    doc = orjson.loads(encode_model_metadata(SIGNATURE, "ranker", 7).body)
    assert doc["model_spec"] == {"name": "ranker", "signature_name": "", "version": "7"}
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
                         "unknown_rank": False},
        "name": "serving_default_x:0",
    }
    assert sig["inputs"]["words"]["dtype"] == "DT_STRING"
    assert sig["outputs"]["score"]["dtype"] == "DT_DOUBLE"


def test_metadata_round_trips_to_the_same_signature():
    back = decode_model_metadata(encode_model_metadata(SIGNATURE, "ranker").body)
    assert back == SIGNATURE
    assert back.input("x").options["tensor_name"] == "serving_default_x:0"


def test_unknown_rank_survives_a_round_trip():
    sig = Signature(inputs=(TensorSpec("any", DType.INT64, (-1,), {"unknown_rank": True}),))
    doc = orjson.loads(encode_model_metadata(sig, "m").body)
    info = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["any"]
    assert info["tensor_shape"] == {"dim": [], "unknown_rank": True}
    assert decode_model_metadata(encode_model_metadata(sig, "m").body).input("any").options[
        "unknown_rank"]


def test_metadata_picks_serving_default_and_skips_init_op():
    # the shape TF Serving answers for a Keras SavedModel: an init-op pseudo signature first
    body = orjson.dumps({
        "model_spec": {"name": "m", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {
            "__saved_model_init_op": {
                "inputs": {},
                "outputs": {"__saved_model_init_op": {
                    "dtype": "DT_INVALID", "tensor_shape": {"dim": [], "unknown_rank": True},
                    "name": "NoOp"}},
                "method_name": ""},
            "serving_default": {
                "inputs": {"age": {"dtype": "DT_INT64",
                                   "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                    "unknown_rank": False},
                                   "name": "serving_default_age:0"}},
                "outputs": {"p": {"dtype": "DT_FLOAT",
                                  "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                           {"size": "1", "name": ""}],
                                                   "unknown_rank": False},
                                  "name": "StatefulPartitionedCall:0"}},
                "method_name": "tensorflow/serving/predict"}}}},
    })
    sig = decode_model_metadata(body)
    assert sig.name == "serving_default"
    assert sig.inputs == (TensorSpec("age", DType.INT64, (-1,)),)
    assert sig.outputs == (TensorSpec("p", DType.FP32, (-1, 1)),)


@pytest.mark.parametrize(
    ("body", "name", "error", "fragment"),
    [
        (b'{"error": "no such model"}', None, TargetError, "no such model"),
        (b'{"model_spec": {}}', None, WireError, "signature_def"),
        (b'{"metadata": {"signature_def": {"signature_def": {}}}}', None, WireError,
         "no signatures"),
        (b'{"metadata": {"signature_def": {"signature_def": {"a": {}}}}}', "b", WireError,
         "no signature 'b'"),
        (b'{"metadata": {"signature_def": {"signature_def": {"s": {"inputs": {"x": {}}}}}}}',
         None, WireError, "no dtype"),
        (b'{"metadata": {"signature_def": {"signature_def": {"s": {"inputs": {"x": '
         b'{"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "many"}]}}}}}}}}',
         None, WireError, "malformed tensor_shape"),
    ],
)
def test_bad_metadata_bodies(body, name, error, fragment):
    with pytest.raises(error, match=fragment):
        decode_model_metadata(body, name)

"""v2 REST paths, health bodies, server and model metadata bodies."""

from __future__ import annotations

import orjson
import pytest

from modelcaliper.errors import TargetError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.openinference_rest_meta import (
    ModelMetadata,
    V2Path,
    decode_health,
    decode_model_metadata,
    encode_health,
    encode_model_metadata,
    encode_server_metadata,
    infer_path,
    model_path,
    parse_v2_path,
)
from modelcaliper.wire.tensors import DType


def test_infer_and_model_paths():
    assert infer_path("ranker") == "/v2/models/ranker/infer"
    assert infer_path("ranker", 3) == "/v2/models/ranker/versions/3/infer"
    assert infer_path("ranker", "") == "/v2/models/ranker/infer"  # empty version = latest
    assert model_path("ranker", "2") == "/v2/models/ranker/versions/2"


@pytest.mark.parametrize(("model", "version"), [("a/b", None), ("", None), ("m", "1/2")])
def test_path_arguments_are_validated(model, version):
    with pytest.raises(WireError, match="cannot appear"):
        infer_path(model, version)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2", V2Path("server_metadata")),
        ("/v2/", V2Path("server_metadata")),  # a trailing slash is tolerated
        ("/v2/health/live", V2Path("live")),
        ("/v2/health/ready", V2Path("ready")),
        ("/v2/models/m", V2Path("model_metadata", "m")),
        ("/v2/models/m/versions/4", V2Path("model_metadata", "m", "4")),
        ("/v2/models/m/ready", V2Path("model_ready", "m")),
        ("/v2/models/m/versions/4/ready", V2Path("model_ready", "m", "4")),
        ("/v2/models/m/infer", V2Path("infer", "m")),
        ("/v2/models/m/versions/4/infer", V2Path("infer", "m", "4")),
        ("/v2/models/m/infer?x=1", V2Path("infer", "m")),  # query ignored
    ],
)
def test_parse_v2_path(path, expected):
    assert parse_v2_path(path) == expected


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/models/m:predict", "not a v2 REST path"),
        ("/v2/health/sick", "expected /v2/health"),
        ("/v2/models", "expected /v2/health"),
        ("/v2/models/m/versions", "needs a version"),
        ("/v2/models/m/explain", "unknown model route '/explain'"),
        ("/v2/models/m/versions/1/infer/more", "unknown model route"),
    ],
)
def test_bad_v2_paths(path, fragment):
    with pytest.raises(WireError, match=fragment):
        parse_v2_path(path)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (encode_health("live", True).body, True),
        (encode_health("ready", False).body, False),
        (b"", None),  # Triton answers with an empty body and a status code
        (b"  ", None),
    ],
)
def test_health_bodies(body, expected):
    assert decode_health(body) is expected


def test_health_errors():
    assert encode_health("ready", True).body == b'{"ready":true}'
    with pytest.raises(TargetError):
        decode_health(b'{"error": "model not loaded"}')
    with pytest.raises(WireError):
        decode_health(b'{"status": "ok"}')


def test_server_metadata():
    body = orjson.loads(encode_server_metadata("modelcaliper", "0.1.0").body)
    assert body == {"name": "modelcaliper", "version": "0.1.0",
                    "extensions": ["binary_tensor_data"]}


SIGNATURE = Signature(
    inputs=(TensorSpec("x", DType.FP32, (-1, 3)), TensorSpec("q", DType.BYTES, (-1,))),
    outputs=(TensorSpec("score", DType.FP16, (-1, 1)),),
)


def test_model_metadata_body():
    encoded = encode_model_metadata(SIGNATURE, "ranker", versions=["1", "2"], platform="onnx")
    assert orjson.loads(encoded.body) == {
        "name": "ranker",
        "versions": ["1", "2"],
        "platform": "onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]},
                   {"name": "q", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "score", "datatype": "FP16", "shape": [-1, 1]}],
    }


def test_model_metadata_round_trips():
    back = decode_model_metadata(encode_model_metadata(SIGNATURE, "ranker").body)
    assert back == ModelMetadata("ranker", ("1",), "modelcaliper",
                                 Signature(SIGNATURE.inputs, SIGNATURE.outputs))


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b'{"error": "unknown model"}', TargetError, "unknown model"),
        (b'{"name": "m"}', WireError, "'inputs' list"),
        (b'{"inputs": [{"datatype": "FP32", "shape": [1]}]}', WireError, "has no name"),
        (b'{"inputs": [{"name": "x", "datatype": "F32", "shape": [1]}]}', WireError,
         "unknown datatype"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}', WireError,
         "below -1"),
    ],
)
def test_bad_model_metadata(body, error, fragment):
    with pytest.raises(error, match=fragment):
        decode_model_metadata(body)

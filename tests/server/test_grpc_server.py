"""The embedded server's gRPC front end, called by official clients and by our bytes client.

Servers run in-process on 127.0.0.1, on one event loop in a background thread; the tests call
them with blocking clients: TF Serving's generated stubs (messages built by TensorFlow),
tritonclient's gRPC client, and pre-serialized bytes through ``grpc_methods.unary_bytes_call``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import tensorflow as tf
import tritonclient.grpc as tritongrpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tritonclient.utils import InferenceServerException

from modelcaliper import __version__
from modelcaliper.server.grpc_server import REPORTED_PHASES
from modelcaliper.server.runtimes import open_runtime
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.tensors import InferRequest
from tests.models import mlp_inputs, multi_io_inputs, ranking_inputs
from tests.server.grpc_harness import (
    CODECS,
    INFER_METHOD,
    TIMEOUT_S,
    LoopThread,
    Served,
    serve,
    serve_mlp,
    tf_predict_request,
)
from tests.wire.grpc_samples import assert_same_tensor, triton_input

SERVED_PHASES = {*REPORTED_PHASES, "total"}


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    """One event loop thread for every server of this module."""
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def mlp_runtime(onnx_mlp_path):
    """The ONNX MLP, loaded once for the module."""
    return open_runtime(onnx_mlp_path)


@pytest.fixture(scope="module")
def mlp(loop, mlp_runtime) -> Iterator[Served]:
    """The 300 → 256 → 128 → 1 MLP as model 'mlp' version 1, with a 1 MiB message limit."""
    served = serve_mlp(loop, mlp_runtime)
    yield served
    served.close()


@pytest.fixture(scope="module")
def multi_io_runtime(onnx_multi_io_path):
    """The four-dtype ONNX model, loaded once for the module."""
    return open_runtime(onnx_multi_io_path)


@pytest.fixture(scope="module")
def multi_io(loop, multi_io_runtime) -> Iterator[Served]:
    """The four-dtype ONNX model as model 'multi' version 1."""
    served = serve(loop, multi_io_runtime, "multi", "1")
    yield served
    served.close()


@pytest.fixture(scope="module")
def ranking_runtime(tf_ranking_base):
    """The TF ranking SavedModel, loaded once for the module."""
    return open_runtime(tf_ranking_base)  # the highest version: 2


@pytest.fixture(scope="module")
def ranking(loop, ranking_runtime) -> Iterator[Served]:
    """The TF ranking SavedModel as model 'ranking' version 2 (of base versions 1 and 2)."""
    served = serve(loop, ranking_runtime, "ranking", ranking_runtime.version)
    yield served
    served.close()


# ---------------------------------------------------------------------------- official clients


@pytest.mark.interop
def test_tf_serving_stub_predict_equals_the_runtime_bit_for_bit(mlp, mlp_runtime):
    inputs = mlp_inputs(25, seed=1)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(mlp.channel)
    answer, call = stub.Predict.with_call(
        tf_predict_request("mlp", inputs), timeout=TIMEOUT_S,
        metadata=(("x-request-id", "tf-1"),))
    want = mlp_runtime.predict(inputs)["score"]
    assert_same_tensor(tf.make_ndarray(answer.outputs["score"]), want)
    assert (answer.model_spec.name, answer.model_spec.version.value) == ("mlp", 1)
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "tf-1"
    assert SERVED_PHASES <= set(parse_server_timing(trailing["server-timing"]))


@pytest.mark.interop
def test_tf_serving_stub_predict_on_the_ranking_model(ranking, ranking_runtime):
    inputs = ranking_inputs(16, seed=2)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ranking.channel)
    request = tf_predict_request("ranking", inputs, signature_name="serving_default")
    request.model_spec.version.value = 2
    answer = stub.Predict(request, timeout=TIMEOUT_S)
    want = ranking_runtime.predict(inputs)
    assert set(answer.outputs) == {"score", "embedding"}
    for name, array in want.items():
        assert_same_tensor(tf.make_ndarray(answer.outputs[name]), array)
    assert answer.model_spec.version.value == 2


@pytest.mark.interop
def test_tf_serving_stub_metadata_describes_the_served_signature(ranking):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ranking.channel)
    answer = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "ranking"}, metadata_field=["signature_def"]), timeout=TIMEOUT_S)
    assert (answer.model_spec.name, answer.model_spec.version.value) == ("ranking", 2)
    definitions = get_model_metadata_pb2.SignatureDefMap()
    assert answer.metadata["signature_def"].Unpack(definitions)
    served = definitions.signature_def["serving_default"]
    dtypes = {k: tf.dtypes.as_dtype(v.dtype).name for k, v in served.inputs.items()}
    assert dtypes == {"numeric": "float32", "country": "string", "item_id": "int64"}
    assert [d.size for d in served.inputs["numeric"].tensor_shape.dim] == [-1, 3]
    assert set(served.outputs) == {"score", "embedding"}


@pytest.mark.interop
def test_tf_serving_stub_model_status_follows_readiness(ranking):
    stub = model_service_pb2_grpc.ModelServiceStub(ranking.channel)
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "ranking"})
    status = stub.GetModelStatus(request, timeout=TIMEOUT_S).model_version_status
    assert [(s.version, s.state) for s in status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    ranking.service.ready = False
    try:
        status = stub.GetModelStatus(request, timeout=TIMEOUT_S).model_version_status
        assert status[0].state == get_model_status_pb2.ModelVersionStatus.LOADING
    finally:
        ranking.service.ready = True


@pytest.fixture
def triton(multi_io) -> Iterator[Any]:
    """tritonclient's blocking gRPC client, connected to the multi-io server."""
    client = tritongrpc.InferenceServerClient(multi_io.address)
    yield client
    client.close()


@pytest.mark.interop
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_tritonclient_infer_equals_the_runtime_for_every_dtype(
    triton, multi_io_runtime, compression
):
    inputs = multi_io_inputs(9, seed=3)
    result = triton.infer("multi", [triton_input(k, v) for k, v in inputs.items()],
                          request_id="t-1", compression_algorithm=compression,
                          client_timeout=TIMEOUT_S)
    for name, array in multi_io_runtime.predict(inputs).items():
        assert_same_tensor(result.as_numpy(name), array)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("multi", "1", "t-1")


@pytest.mark.interop
def test_tritonclient_health_and_metadata(triton, multi_io_runtime):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("multi") and triton.is_model_ready("multi", "1")
    metadata = triton.get_model_metadata("multi")
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        "multi", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (s.name, s.dtype.v2, list(s.shape)) for s in multi_io_runtime.signature.inputs]
    server = triton.get_server_metadata()
    assert (server.name, server.version) == ("modelcaliper", __version__)


@pytest.mark.interop
@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("other", ""),  # a model this server does not serve
        ("multi", "7"),  # the served model, a version it does not have
    ],
)
def test_tritonclient_unknown_models_are_not_ready_and_not_found(triton, name, version):
    # Triton answers ModelReady for an unknown model with ready=false, not an error.
    assert triton.is_model_ready(name, version) is False
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata(name, version)
    assert caught.value.status() == "StatusCode.NOT_FOUND"


# ---------------------------------------------------------------------------- our bytes client


@pytest.mark.parametrize("encoding", list(CODECS))
@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_bytes_client_predictions_equal_the_runtime_with_timing(
    mlp, mlp_runtime, encoding, compression
):
    codec, inputs = CODECS[encoding], mlp_inputs(25, seed=4)
    body = codec.encode_request(InferRequest(inputs, model_name="mlp")).body
    reply, trailing = mlp.call(INFER_METHOD[encoding], body,
                               compression=gm.grpc_compression(compression),
                               metadata=(("x-request-id", f"{encoding}-{compression}"),))
    response = codec.decode_response(reply)
    assert_same_tensor(response.outputs["score"], mlp_runtime.predict(inputs)["score"])
    assert (response.model_name, response.model_version) == ("mlp", "1")
    assert trailing["x-request-id"] == f"{encoding}-{compression}"
    phases = parse_server_timing(trailing["server-timing"])
    assert set(phases) == SERVED_PHASES  # no batching here: batch is listed as 0
    assert phases["batch"] == 0.0
    assert phases["recv"] == 0.0  # gRPC hands over the whole message
    # each phase is sent rounded to 0.001 ms, so allow half of that per phase summed
    assert phases["total"] >= phases["decode"] + phases["compute"] + phases["encode"] - 0.0015


@pytest.mark.interop
def test_gzip_official_stub_and_tritonclient_against_the_mlp(mlp, mlp_runtime):
    inputs = mlp_inputs(25, seed=5)
    want = mlp_runtime.predict(inputs)["score"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(mlp.channel)
    answer = stub.Predict(tf_predict_request("mlp", inputs), timeout=TIMEOUT_S,
                          compression=grpc.Compression.Gzip)
    assert_same_tensor(tf.make_ndarray(answer.outputs["score"]), want)
    client = tritongrpc.InferenceServerClient(mlp.address)
    try:
        result = client.infer("mlp", [triton_input("features", inputs["features"])],
                              compression_algorithm="gzip", client_timeout=TIMEOUT_S)
        assert_same_tensor(result.as_numpy("score"), want)
    finally:
        client.close()


def test_metadata_and_status_answers_through_our_decoders(mlp, mlp_runtime):
    reply, _ = mlp.call(gm.TFS_GET_MODEL_METADATA,
                        tfmeta.encode_metadata_request(tfmeta.ModelRef("mlp", "1")))
    metadata = tfmeta.decode_metadata_response(reply)
    assert metadata.model == tfmeta.ModelRef("mlp", "1")
    assert metadata.signature() == mlp_runtime.signature
    stable = tfmeta.ModelRef("mlp", version_label="stable")
    reply, _ = mlp.call(gm.TFS_GET_MODEL_STATUS, tfmeta.encode_status_request(stable))
    assert tfmeta.decode_status_response(reply) == [tfmeta.VersionStatus(1, "AVAILABLE")]
    reply, _ = mlp.call(gm.V2_MODEL_METADATA, v2meta.encode_model_metadata_request("mlp", "1"))
    v2 = v2meta.decode_model_metadata_response(reply)
    assert (v2.name, v2.versions, v2.signature.inputs) == ("mlp", ("1",),
                                                          mlp_runtime.signature.inputs)

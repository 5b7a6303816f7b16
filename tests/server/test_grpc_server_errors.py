"""The embedded server's gRPC front end when things go wrong.

Bad inputs, unknown models, malformed and oversize messages, a failing model, a full queue, a
model still warming up, and ports that cannot be bound: each must end as the right gRPC
status, with the server still answering afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from modelcaliper.errors import UsageError
from modelcaliper.server.grpc_server import REPORTED_PHASES, build_grpc_server
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.runtimes import open_runtime
from modelcaliper.server.service import ModelService, ServiceOptions
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.wire import grpc_methods as gm
from modelcaliper.wire import openinference_grpc_meta as v2meta
from modelcaliper.wire import tfserving_grpc_meta as tfmeta
from modelcaliper.wire.tensors import InferRequest
from tests.models import mlp_inputs
from tests.server.grpc_harness import (
    CODECS,
    INFER_METHOD,
    MLP_LIMIT_BYTES,
    TIMEOUT_S,
    ControlledRuntime,
    LoopThread,
    Served,
    rpc_error,
    serve,
    serve_mlp,
)


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
    """The MLP as model 'mlp' version 1, with a 1 MiB message limit and a controllable runtime."""
    served = serve_mlp(loop, mlp_runtime)
    yield served
    served.close()


# ---------------------------------------------------------------------------- client mistakes


def _bad_inputs() -> list[tuple[dict[str, np.ndarray], str, str]]:
    good = mlp_inputs(2)["features"]
    return [
        ({"feature": good}, "'feature'", "unknown input"),  # misspelt input name
        ({"features": good, "extra": good}, "'extra'", "unknown input"),  # one input too many
        ({}, "'features'", "missing input"),  # no inputs at all
        ({"features": np.full((2, 300), b"x", object)}, "'features'", "BYTES"),  # strings
        ({"features": np.ones((2, 300), bool)}, "'features'", "BOOL"),  # booleans
        ({"features": good[:, :299]}, "'features'", "dimension 1 must be 300"),  # width
        ({"features": good.ravel()}, "'features'", "expected rank 2"),  # rank
    ]


@pytest.mark.parametrize("encoding", list(CODECS))
@pytest.mark.parametrize(("inputs", "tensor", "fragment"), _bad_inputs())
def test_bad_inputs_are_invalid_argument_naming_the_tensor(
    mlp, encoding, inputs, tensor, fragment
):
    body = CODECS[encoding].encode_request(InferRequest(inputs, model_name="mlp")).body
    error = rpc_error(mlp.call, INFER_METHOD[encoding], body)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert tensor in error.details() and fragment in error.details()
    assert "\n" not in error.details()
    # Failed calls still say where the time went.
    phases = parse_server_timing(dict(error.trailing_metadata())["server-timing"])
    assert set(phases) == {*REPORTED_PHASES, "total"}
    assert phases["compute"] == 0.0  # refused before the model ran


@pytest.mark.parametrize("encoding", list(CODECS))
def test_malformed_messages_are_invalid_argument(mlp, encoding):
    error = rpc_error(mlp.call, INFER_METHOD[encoding], b"\x0a\xff\xff\xff\xff\x0f")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("encoding", list(CODECS))
@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ({"model_name": "nope"}, "model 'nope' is not served"),  # unknown model
        ({"model_version": "3"}, "no version 3"),  # unknown version of the served model
    ],
)
def test_unknown_models_in_inference_calls_are_not_found(mlp, encoding, address, fragment):
    request = InferRequest(mlp_inputs(2), **{"model_name": "mlp", **address})
    error = rpc_error(mlp.call, INFER_METHOD[encoding],
                      CODECS[encoding].encode_request(request).body)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert fragment in error.details()


def test_a_signature_that_is_not_served_is_invalid_argument(mlp):
    request = InferRequest(mlp_inputs(2), model_name="mlp", signature_name="transform")
    error = rpc_error(mlp.call, gm.TFS_PREDICT, CODECS["tfserving-grpc"].encode_request(
        request).body)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "signature 'transform' is not served" in error.details()


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        # TF metadata: unknown model, unknown version, no metadata_field, an unsupported field.
        (gm.TFS_GET_MODEL_METADATA,
         tfmeta.encode_metadata_request(tfmeta.ModelRef("nope")), "NOT_FOUND"),
        (gm.TFS_GET_MODEL_METADATA,
         tfmeta.encode_metadata_request(tfmeta.ModelRef("mlp", "9")), "NOT_FOUND"),
        (gm.TFS_GET_MODEL_METADATA,
         tfmeta.encode_metadata_request(tfmeta.ModelRef("mlp"), ()), "INVALID_ARGUMENT"),
        (gm.TFS_GET_MODEL_METADATA,
         tfmeta.encode_metadata_request(tfmeta.ModelRef("mlp"), ("graph",)), "INVALID_ARGUMENT"),
        # TF status: unknown model, unknown version, unknown version label.
        (gm.TFS_GET_MODEL_STATUS,
         tfmeta.encode_status_request(tfmeta.ModelRef("nope")), "NOT_FOUND"),
        (gm.TFS_GET_MODEL_STATUS,
         tfmeta.encode_status_request(tfmeta.ModelRef("mlp", "2")), "NOT_FOUND"),
        (gm.TFS_GET_MODEL_STATUS,
         tfmeta.encode_status_request(tfmeta.ModelRef("mlp", version_label="canary")),
         "NOT_FOUND"),
        # v2 metadata: unknown model, unknown version; a body that is no message at all.
        (gm.V2_MODEL_METADATA, v2meta.encode_model_metadata_request("nope"), "NOT_FOUND"),
        (gm.V2_MODEL_METADATA, v2meta.encode_model_metadata_request("mlp", "2"), "NOT_FOUND"),
        (gm.V2_MODEL_METADATA, b"\x0a\xff\xff\xff\xff\x0f", "INVALID_ARGUMENT"),
    ],
)
def test_metadata_and_status_errors(mlp, method, body, code):
    error = rpc_error(mlp.call, method, body, metadata=(("x-request-id", "meta-1"),))
    assert error.code() is grpc.StatusCode[code]
    assert dict(error.trailing_metadata())["x-request-id"] == "meta-1"


# ---------------------------------------------------------------------------- failures and limits


def test_runtime_failure_is_internal_and_the_server_keeps_serving(mlp):
    body = CODECS["v2-grpc"].encode_request(InferRequest(mlp_inputs(3), model_name="mlp")).body
    mlp.service.runtime.fail = True
    try:
        error = rpc_error(mlp.call, gm.V2_MODEL_INFER, body)
    finally:
        mlp.service.runtime.fail = False
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "RuntimeError: simulated kernel failure in Gemm" in error.details()
    phases = parse_server_timing(dict(error.trailing_metadata())["server-timing"])
    assert phases["compute"] > 0.0  # the time until the model raised is charged to it
    reply, _ = mlp.call(gm.V2_MODEL_INFER, body)
    assert CODECS["v2-grpc"].decode_response(reply).outputs["score"].shape == (3, 1)
    assert 'status="INTERNAL"' in mlp.metrics.render()


@pytest.mark.parametrize("encoding", list(CODECS))
@pytest.mark.parametrize(
    ("rows", "features", "compression"),
    [
        (1000, "random", "none"),  # 1.2 MB on the wire, over the 1 MiB limit
        (1000, "zeros", "gzip"),  # ~1 KB on the wire, 1.2 MB once decompressed
    ],
)
def test_oversize_messages_are_resource_exhausted(mlp, encoding, rows, features, compression):
    array = mlp_inputs(rows)["features"] if features == "random" else np.zeros((rows, 300),
                                                                               np.float32)
    body = CODECS[encoding].encode_request(InferRequest({"features": array}, model_name="mlp"))
    assert len(body.body) > MLP_LIMIT_BYTES
    error = rpc_error(mlp.call, INFER_METHOD[encoding], body.body,
                      compression=gm.grpc_compression(compression))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()


def test_a_full_queue_is_resource_exhausted_and_recovers(loop, mlp_runtime):
    runtime = ControlledRuntime(mlp_runtime)
    runtime.delay_s = 0.5  # long enough that all six calls arrive while the first runs
    slow = serve(loop, runtime, "mlp", "1",
                 options=ServiceOptions(model_threads=1, max_queued_requests=1))
    try:
        body = CODECS["tfserving-grpc"].encode_request(
            InferRequest(mlp_inputs(2), model_name="mlp")).body
        call = gm.unary_bytes_call(slow.channel, gm.TFS_PREDICT)
        futures = [call.future(body, timeout=TIMEOUT_S) for _ in range(6)]
        for future in futures:
            future.exception(TIMEOUT_S)  # waits for the call to end
        codes = [f.code() for f in futures]
        # One call runs, one waits for the model thread, the rest are turned away at once.
        assert codes.count(grpc.StatusCode.OK) == 2
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4
        refused = next(f for f in futures if f.code() is grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "overloaded" in refused.details()
        assert 'caliper_server_rejected_total{reason="overloaded"} 4' in slow.metrics.render()
        runtime.delay_s = 0.0
        assert slow.call(gm.TFS_PREDICT, body)[0]
    finally:
        slow.close()


def test_a_model_that_is_not_ready(mlp):
    mlp.service.ready = False
    try:
        for encoding, method in INFER_METHOD.items():
            body = CODECS[encoding].encode_request(InferRequest(mlp_inputs(2), model_name="mlp"))
            error = rpc_error(mlp.call, method, body.body)
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert "not ready" in error.details()
        answers = [
            mlp.call(gm.V2_SERVER_LIVE, v2meta.EMPTY_REQUEST)[0],
            mlp.call(gm.V2_SERVER_READY, v2meta.EMPTY_REQUEST)[0],
            mlp.call(gm.V2_MODEL_READY, v2meta.encode_model_ready_request("mlp"))[0],
        ]
        assert [v2meta.decode_ready(a) for a in answers] == [True, False, False]
    finally:
        mlp.service.ready = True
    assert v2meta.decode_ready(mlp.call(gm.V2_SERVER_READY, v2meta.EMPTY_REQUEST)[0]) is True


def test_requests_are_recorded_in_the_metrics(loop, mlp_runtime):
    served = serve(loop, mlp_runtime, "mlp", "1")
    try:
        for encoding, method in INFER_METHOD.items():
            request = InferRequest(mlp_inputs(5), model_name="mlp")
            served.call(method, CODECS[encoding].encode_request(request).body)
        rpc_error(served.call, gm.V2_MODEL_INFER, CODECS["v2-grpc"].encode_request(
            InferRequest({"x": mlp_inputs(1)["features"]}, model_name="mlp")).body)
        served.call(gm.TFS_GET_MODEL_STATUS, tfmeta.encode_status_request(tfmeta.ModelRef("mlp")))
        rpc_error(served.call, gm.V2_MODEL_METADATA, v2meta.encode_model_metadata_request("x"))
        text = served.metrics.render()
    finally:
        served.close()
    counts = {  # every call is counted, by the gRPC status it ended with
        "OK": 3, "INVALID_ARGUMENT": 1, "NOT_FOUND": 1,
    }
    for status, count in counts.items():
        assert (f':tensorflow:serving:request_count{{model_name="mlp",status="{status}"}} '
                f'{count}') in text
    for api in ("predict", "infer"):
        assert (f':tensorflow:serving:request_latency_count{{model_name="mlp",API="{api}",'
                f'entrypoint="GRPC"}}') in text
    assert ':tensorflow:serving:batching_session:input_batch_size_sum{model_name="mlp"} 11' \
        in text  # 5 + 5 + 1 rows


# ---------------------------------------------------------------------------- binding


def test_a_busy_port_is_a_usage_error(loop, mlp, mlp_runtime):
    service = ModelService(mlp_runtime, model_name="mlp", version="1")

    async def build_on_the_busy_port() -> None:
        build_grpc_server(service, Metrics(), port=mlp.port)

    try:
        with pytest.raises(UsageError, match=f"127.0.0.1:{mlp.port}: the port is in use"):
            loop.run(build_on_the_busy_port())
    finally:
        service.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"port": 70000}, "between 0 and 65535"),  # no such port
        ({"port": -1}, "between 0 and 65535"),  # negative port
        ({"max_message_bytes": 0}, "max_message_bytes must be ≥ 1"),  # no room for a message
    ],
)
def test_bad_server_options_are_usage_errors(mlp_runtime, options, fragment):
    service = ModelService(mlp_runtime, model_name="mlp", version="1")
    try:
        with pytest.raises(UsageError, match=fragment):
            build_grpc_server(service, Metrics(), **options)
    finally:
        service.close()

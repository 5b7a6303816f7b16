"""The HTTP front end, driven in-process through a small ASGI harness with real models."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
import zstandard

from modelcaliper.server.batching import BatchingParameters
from modelcaliper.server.http import HttpFrontEnd, choose_encoding
from modelcaliper.server.metrics import Metrics
from modelcaliper.server.runtimes import open_runtime
from modelcaliper.server.service import ModelService, ServiceOptions
from modelcaliper.server.timing import REPORTED_PHASES as INFER_PHASES
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.wire.openinference_rest import V2RestCodec
from modelcaliper.wire.tensors import InferRequest
from modelcaliper.wire.tfserving_rest import TFServingRestCodec
from tests.models import mlp_inputs, multi_io_inputs, ranking_inputs

MIB = 1024 * 1024

# --------------------------------------------------------------------------- the harness


@dataclass
class Reply:
    """What the app sent back, plus how many times it called ``receive``."""

    status: int
    headers: dict[str, str]
    body: bytes
    receives: int

    def json(self) -> object:
        return orjson.loads(self.body)

    @property
    def timing(self) -> dict[str, float]:
        return parse_server_timing(self.headers.get("server-timing"))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module: a service's queue belongs to the loop that used it."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


async def call(app, method, path, body=b"", headers=(), *, chunks=None, disconnect=False):
    """One request through ``app``; ``chunks`` streams the body, ``disconnect`` drops it."""
    pieces = list(chunks) if chunks is not None else [body]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    sent, count = [], [0]

    async def receive():
        count[0] += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in dict(headers).items()]
    await app(
        {"type": "http", "method": method, "path": path, "headers": raw_headers}, receive, send
    )
    if not sent:
        return None
    start, body_message = sent
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return Reply(start["status"], out_headers, body_message["body"], count[0])


def run(loop, app, method, path, body=b"", headers=(), **kw):
    return loop.run_until_complete(call(app, method, path, body, headers, **kw))


def make_app(runtime, *, ready=True, name="mlp", version="1", options=None, **kw):
    service = ModelService(runtime, model_name=name, version=version, options=options)
    service.ready = ready
    return HttpFrontEnd(service, Metrics(), **kw)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality of dtype, shape and content."""
    if a.dtype == object:
        return b.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class Flaky:
    """Wraps a runtime; raises once when ``fail_next`` is set, or sleeps ``delay_s``."""

    def __init__(self, inner, delay_s=0.0):
        self.inner, self.delay_s, self.fail_next = inner, delay_s, False
        self.signature, self.platform, self.version = inner.signature, inner.platform, "1"

    def predict(self, inputs):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("kernel exploded")
        time.sleep(self.delay_s)
        return self.inner.predict(inputs)

    def start_profiling(self, out_dir):
        raise NotImplementedError

    def stop_profiling(self):
        raise NotImplementedError


@pytest.fixture(scope="module")
def mlp(onnx_mlp_path: Path):
    return open_runtime(onnx_mlp_path)


@pytest.fixture(scope="module")
def multi(onnx_multi_io_path: Path):
    return open_runtime(onnx_multi_io_path)


@pytest.fixture(scope="module")
def app(mlp):
    return make_app(mlp, max_body_bytes=MIB)


def v2_body(inputs, binary=False, **fields):
    encoded = V2RestCodec(binary).encode_request(InferRequest(inputs, **fields))
    return encoded.body, dict(encoded.headers)


# --------------------------------------------------------------------------- routes


@pytest.mark.parametrize(
    ("method", "path", "status", "expect"),
    [
        ("GET", "/v2", 200, {"name": "modelcaliper"}),  # server metadata
        ("GET", "/v2/health/live", 200, {"live": True}),  # liveness
        ("GET", "/v2/health/ready", 200, {"ready": True}),  # readiness
        ("GET", "/v2/models/mlp", 200, {"name": "mlp", "versions": ["1"]}),  # model metadata
        ("GET", "/v2/models/mlp/versions/1", 200, {"platform": "onnxruntime_onnx"}),
        ("GET", "/v2/models/mlp/ready", 200, {"ready": True}),  # model readiness
        ("GET", "/v2/models/mlp/versions/1/ready", 200, {"ready": True}),
        ("GET", "/v2/models/other", 404, None),  # unknown model
        ("GET", "/v2/models/mlp/versions/9", 404, None),  # unknown version
        ("GET", "/v2/models/mlp/nope", 404, None),  # unknown model route
        ("POST", "/v2/models/mlp", 405, None),  # metadata is GET
        ("GET", "/v2/models/mlp/infer", 405, None),  # infer is POST
        (
            "GET",
            "/v1/models/mlp",
            200,
            {
                "model_version_status": [
                    {
                        "version": "1",
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""},
                    }
                ]
            },
        ),  # TF status
        ("GET", "/v1/models/mlp/versions/1", 200, None),  # status of a version
        ("GET", "/v1/models/mlp/labels/stable", 200, None),  # status by label
        ("GET", "/v1/models/mlp/versions/2", 404, None),  # unknown version
        ("GET", "/v1/models/mlp/labels/canary", 404, None),  # unknown label
        ("GET", "/v1/models/nope/metadata", 404, None),  # unknown model
        ("GET", "/v1/models/mlp/what/ever", 404, None),  # malformed TF path
        ("POST", "/v1/models/mlp:classify", 501, None),  # Classify API
        ("POST", "/v1/models/mlp:regress", 501, None),  # Regress API
        ("GET", "/v1/models/mlp:predict", 405, None),  # predict is POST
        ("GET", "/nothing/here", 404, None),  # unknown path
        ("POST", "/metrics", 405, None),  # metrics is GET
    ],
)
def test_routes(loop, app, method, path, status, expect):
    reply = run(loop, app, method, path)
    assert reply.status == status, reply.body
    doc = reply.json()
    if status >= 400:
        assert isinstance(doc["error"], str) and doc["error"] and "\n" not in doc["error"]
    elif expect is not None:
        assert {k: doc[k] for k in expect} == expect
    assert "total" in reply.timing


def test_method_not_allowed_names_the_method(loop, app):
    reply = run(loop, app, "GET", "/v1/models/mlp:predict")
    assert reply.headers["allow"] == "POST" and "POST" in reply.json()["error"]


def test_tf_metadata_describes_the_signature(loop, app):
    doc = run(loop, app, "GET", "/v1/models/mlp/metadata").json()
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert doc["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    assert sig["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "300"]


@pytest.mark.parametrize("path", ["/metrics", "/monitoring/prometheus/metrics"])
def test_metrics_count_requests_by_status(loop, mlp, path):
    app = make_app(mlp)
    run(loop, app, "POST", "/v2/models/mlp/infer", *v2_body(mlp_inputs(2)))
    run(loop, app, "POST", "/v2/models/mlp/infer", b"{not json")
    reply = run(loop, app, "GET", path)
    text = reply.body.decode()
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert ':tensorflow:serving:request_count{model_name="mlp",status="OK"} 1' in text
    assert ':tensorflow:serving:request_count{model_name="mlp",status="INVALID_ARGUMENT"} 1' in text
    assert 'API="infer",entrypoint="REST"' in text
    assert 'caliper_server_phase_seconds_count{phase="compute"} 2' in text


# --------------------------------------------------------------------------- predictions


@pytest.mark.parametrize("fmt", ["rows", "columnar"])
def test_tf_rest_predictions_equal_in_process_predict(loop, app, mlp, fmt):
    inputs = mlp_inputs(25, seed=3)
    codec = TFServingRestCodec(fmt, signature=mlp.signature)
    encoded = codec.encode_request(InferRequest(inputs, model_name="mlp"))
    reply = run(loop, app, "POST", "/v1/models/mlp/versions/1:predict", encoded.body)
    assert reply.status == 200, reply.body
    assert list(reply.json()) == (["predictions"] if fmt == "rows" else ["outputs"])
    got = codec.decode_response(reply.body).outputs["score"]
    assert same(got, mlp.predict(inputs)["score"])


@pytest.mark.parametrize("binary", [False, True])
def test_v2_predictions_equal_in_process_predict(loop, app, mlp, binary):
    inputs = mlp_inputs(25, seed=4)
    body, headers = v2_body(inputs, binary, model_name="mlp", request_id="abc")
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", body, headers)
    assert reply.status == 200, reply.body
    assert ("inference-header-content-length" in reply.headers) is binary
    response = V2RestCodec(binary).decode_response(reply.body, reply.headers)
    assert response.request_id == "abc" and response.model_version == "1"
    assert same(response.outputs["score"], mlp.predict(inputs)["score"])


@pytest.mark.parametrize("encoding", ["tfserving-rest rows", "v2-rest json", "v2-rest binary"])
def test_every_dtype_round_trips(loop, multi, encoding):
    app = make_app(multi, name="multi")
    inputs = multi_io_inputs(7, seed=1)
    if encoding.startswith("tfserving"):
        codec = TFServingRestCodec("rows", signature=multi.signature)
        path = "/v1/models/multi:predict"
    else:
        codec = V2RestCodec(binary=encoding.endswith("binary"))
        path = "/v2/models/multi/infer"
    encoded = codec.encode_request(InferRequest(inputs, model_name="multi"))
    reply = run(loop, app, "POST", path, encoded.body, encoded.headers)
    assert reply.status == 200, reply.body
    outputs = codec.decode_response(reply.body, reply.headers).outputs
    expected = multi.predict(inputs)
    assert set(outputs) == set(expected)
    for name, array in expected.items():
        assert same(outputs[name], array), name


def test_v2_requested_outputs_and_binary_per_output(loop, multi):
    app = make_app(multi, name="multi")
    inputs = multi_io_inputs(3)
    doc = orjson.loads(v2_body(inputs)[0])
    doc["outputs"] = [
        {"name": "count_next", "parameters": {"binary_data": True}},
        {"name": "token_echo"},
    ]
    reply = run(loop, app, "POST", "/v2/models/multi/infer", orjson.dumps(doc))
    response = V2RestCodec().decode_response(reply.body, reply.headers)
    assert list(response.outputs) == ["count_next", "token_echo"]
    assert same(response.outputs["count_next"], inputs["count"] + 1)


# --------------------------------------------------------------------------- Server-Timing


def test_server_timing_lists_every_phase(loop, app):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", *v2_body(mlp_inputs(25)))
    phases = reply.timing
    assert set(INFER_PHASES) | {"total"} <= set(phases)
    assert all(v >= 0 for v in phases.values())
    assert phases["compute"] > 0 and phases["decode"] > 0
    # The phases are disjoint slices of the request, so they never add up to more than total.
    assert sum(phases[p] for p in INFER_PHASES) <= phases["total"] + 0.01


def test_server_timing_on_failures_keeps_the_phases(loop, app):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", b"[1, 2")
    assert reply.status == 400
    assert set(INFER_PHASES) | {"total"} <= set(reply.timing)
    assert reply.timing["compute"] == 0.0 and reply.timing["decode"] > 0


def test_transform_and_model_phases_of_a_tf_model(loop, tf_ranking_base):
    runtime = open_runtime(tf_ranking_base)
    app = make_app(runtime, name="ranker", version=runtime.version)
    inputs = ranking_inputs(5)
    codec = TFServingRestCodec("rows", signature=runtime.signature)
    encoded = codec.encode_request(InferRequest(inputs, model_name="ranker"))
    reply = run(loop, app, "POST", "/v1/models/ranker:predict", encoded.body)
    assert reply.status == 200, reply.body
    assert {"transform", "model", "compute"} <= set(reply.timing)
    outputs = codec.decode_response(reply.body).outputs
    expected = runtime.predict(inputs)
    assert all(same(outputs[n], expected[n]) for n in expected)
    # The base path serves its highest version; version 1 is not served.
    assert (
        run(loop, app, "POST", "/v1/models/ranker/versions/1:predict", encoded.body).status == 404
    )
    assert (
        run(loop, app, "POST", "/v1/models/ranker/versions/2:predict", encoded.body).status == 200
    )


def test_request_id_is_echoed_on_success_and_errors(loop, app):
    for method, path, body in [
        ("POST", "/v2/models/mlp/infer", v2_body(mlp_inputs(1))[0]),
        ("POST", "/v2/models/mlp/infer", b"{}"),
        ("GET", "/missing", b""),
    ]:
        reply = run(loop, app, method, path, body, {"x-request-id": "req-42"})
        assert reply.headers["x-request-id"] == "req-42"


# --------------------------------------------------------------------------- client errors


def _rows(rows):
    return orjson.dumps({"instances": rows})


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        # unknown input name
        ("/v1/models/mlp:predict", _rows([{"feature": [0.0] * 300}]), 400, "feature"),
        # strings where numbers belong
        ("/v1/models/mlp:predict", _rows([["a"] * 300]), 400, "features"),
        # wrong width
        ("/v1/models/mlp:predict", _rows([[0.0] * 299]), 400, "features"),
        # ragged rows
        ("/v1/models/mlp:predict", _rows([[0.0] * 300, [0.0] * 3]), 400, "features"),
        # malformed JSON
        ("/v1/models/mlp:predict", b'{"instances": [', 400, "JSON"),
        # neither instances nor inputs
        ("/v1/models/mlp:predict", b'{"rows": []}', 400, "instances"),
        # a signature this server does not serve
        (
            "/v1/models/mlp:predict",
            orjson.dumps({"signature_name": "transform", "instances": [[0.0] * 300]}),
            400,
            "transform",
        ),
        # v2: wrong datatype for the input
        (
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "shape": [1, 300],
                            "datatype": "BYTES",
                            "data": ["x"] * 300,
                        }
                    ]
                }
            ),
            400,
            "features",
        ),
        # v2: shape and data disagree
        (
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "shape": [2, 300],
                            "datatype": "FP32",
                            "data": [0.0] * 300,
                        }
                    ]
                }
            ),
            400,
            "features",
        ),
        # v2: unknown output requested
        (
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "shape": [1, 300],
                            "datatype": "FP32",
                            "data": [0.0] * 300,
                        }
                    ],
                    "outputs": [{"name": "logits"}],
                }
            ),
            400,
            "logits",
        ),
        # unknown model / version on the infer routes
        ("/v2/models/other/infer", b"{}", 404, "other"),
        ("/v2/models/mlp/versions/3/infer", b"{}", 404, "3"),
        ("/v1/models/other:predict", b"{}", 404, "other"),
    ],
)
def test_client_errors_name_the_culprit(loop, app, path, body, status, named):
    reply = run(loop, app, "POST", path, body)
    assert reply.status == status, reply.body
    assert named in reply.json()["error"]


def test_missing_input_is_named(loop, multi):
    app = make_app(multi, name="multi")
    inputs = multi_io_inputs(2)
    del inputs["flag"]
    reply = run(loop, app, "POST", "/v2/models/multi/infer", *v2_body(inputs))
    assert reply.status == 400 and "'flag'" in reply.json()["error"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-encoding": "br"}, 400),  # an encoding the server does not speak
        ({"content-encoding": "gzip"}, 400),  # claims gzip, is not gzip
        ({"content-length": "ten"}, 400),  # unreadable Content-Length
    ],
)
def test_bad_framing_is_a_client_error(loop, app, headers, status):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", b"{}", headers)
    assert reply.status == status and reply.json()["error"]


# --------------------------------------------------------------------------- size limits


def test_declared_oversize_body_is_refused_before_reading(loop, app):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", b"{}", {"content-length": str(MIB + 1)})
    assert reply.status == 413 and reply.receives == 0
    assert reply.headers["connection"] == "close" and "limit" in reply.json()["error"]


def test_streamed_oversize_body_stops_being_read(loop, app):
    chunks = [b"x" * (256 * 1024)] * 12  # 3 MiB against a 1 MiB limit
    reply = run(loop, app, "POST", "/v1/models/mlp:predict", chunks=chunks)
    assert reply.status == 413 and reply.receives <= 5
    assert reply.headers["connection"] == "close"
    assert app._buffered_bytes == 0


@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd"])
def test_compressed_bomb_is_refused(loop, app, codec):
    raw = b" " * (3 * MIB)
    packed = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[codec](raw)
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", packed, {"content-encoding": codec})
    assert reply.status == 413


def test_bodies_held_at_once_share_a_budget(loop, mlp):
    app = make_app(mlp, max_body_bytes=MIB, max_buffered_bytes=4096)
    body, headers = v2_body(mlp_inputs(2))  # about 8 KB of JSON
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", body, headers)
    assert reply.status == 503 and "bytes" in reply.json()["error"]
    assert app._buffered_bytes == 0


def test_client_leaving_mid_body_gets_no_reply_and_frees_its_bytes(loop, app):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", chunks=[b'{"inputs"'], disconnect=True)
    assert reply is None and app._buffered_bytes == 0


# --------------------------------------------------------------------------- compression


@pytest.mark.parametrize("codec", ["gzip", "deflate", "zstd"])
def test_compressed_requests_are_decoded(loop, app, mlp, codec):
    inputs = mlp_inputs(5)
    body, _ = v2_body(inputs)
    packed = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[codec](body)
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", packed, {"content-encoding": codec})
    assert reply.status == 200, reply.body
    assert same(
        V2RestCodec().decode_response(reply.body).outputs["score"], mlp.predict(inputs)["score"]
    )


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip, deflate, zstd", "zstd"),  # equal weights: zstd is preferred
        ("gzip;q=1.0, zstd;q=0.5", "gzip"),  # the client's weights win
        ("*", "zstd"),  # anything goes
        ("br, *;q=0", "none"),  # nothing we speak
        ("identity", "none"),
        ("x-gzip", "gzip"),  # the old alias
        ("zstd;q=0, gzip;q=0.1", "gzip"),  # q=0 rules zstd out
        ("GZIP ; Q=0.3", "gzip"),  # case-insensitive
        ("zstd;q=abc", "none"),  # an unreadable weight counts as 0
    ],
)
def test_choose_encoding(accept, expected):
    assert choose_encoding(accept) == expected


@pytest.mark.parametrize("accept", ["zstd", "gzip", "deflate"])
def test_large_responses_are_compressed(loop, app, mlp, accept):
    inputs = mlp_inputs(200)  # ~4 KB of JSON scores
    body, headers = v2_body(inputs)
    reply = run(
        loop, app, "POST", "/v2/models/mlp/infer", body, {**headers, "accept-encoding": accept}
    )
    assert reply.headers["content-encoding"] == accept
    plain = {
        "gzip": gzip.decompress,
        "deflate": zlib.decompress,
        "zstd": zstandard.ZstdDecompressor().decompress,
    }[accept](reply.body)
    assert same(V2RestCodec().decode_response(plain).outputs["score"], mlp.predict(inputs)["score"])


def test_small_responses_are_sent_as_they_are(loop, app):
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", *v2_body(mlp_inputs(1)))
    reply2 = run(loop, app, "GET", "/v2/health/ready", b"", {"accept-encoding": "gzip"})
    assert "content-encoding" not in reply.headers and "content-encoding" not in reply2.headers


# --------------------------------------------------------------------------- failures


def test_model_failure_is_500_and_the_server_keeps_serving(loop, mlp):
    flaky = Flaky(mlp)
    app = make_app(flaky)
    flaky.fail_next = True
    body, headers = v2_body(mlp_inputs(2))
    failed = run(loop, app, "POST", "/v2/models/mlp/infer", body, headers)
    assert failed.status == 500 and "kernel exploded" in failed.json()["error"]
    assert failed.timing["compute"] > 0
    assert run(loop, app, "POST", "/v2/models/mlp/infer", body, headers).status == 200


def test_unexpected_exception_is_500_and_the_server_keeps_serving(loop, mlp, monkeypatch):
    app = make_app(mlp)
    body, headers = v2_body(mlp_inputs(2))

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(app._v2, "encode_response", broken)
    reply = run(loop, app, "POST", "/v2/models/mlp/infer", body, headers)
    assert reply.status == 500 and "TypeError: a bug" in reply.json()["error"]
    monkeypatch.undo()
    assert run(loop, app, "POST", "/v2/models/mlp/infer", body, headers).status == 200


def test_overload_is_503(loop, mlp):
    slow = Flaky(mlp, delay_s=0.3)
    app = make_app(slow, options=ServiceOptions(model_threads=1, max_queued_requests=1))
    body, headers = v2_body(mlp_inputs(2))

    async def three_at_once():
        return await asyncio.gather(
            *[call(app, "POST", "/v2/models/mlp/infer", body, headers) for _ in range(3)]
        )

    replies = loop.run_until_complete(three_at_once())
    assert sorted(r.status for r in replies) == [200, 200, 503]
    rejected = next(r for r in replies if r.status == 503)
    assert "overloaded" in rejected.json()["error"] and "total" in rejected.timing


def test_batched_requests_report_the_batch_phase(loop, mlp):
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=20_000)
    app = make_app(mlp, options=ServiceOptions(batching=params))
    inputs = [mlp_inputs(3, seed=s) for s in range(4)]

    async def together():
        return await asyncio.gather(
            *[call(app, "POST", "/v2/models/mlp/infer", *v2_body(x, True)) for x in inputs]
        )

    replies = loop.run_until_complete(together())
    # All four arrive within the timeout, so they run as one 12-row batch, in arrival order.
    merged = mlp.predict({"features": np.concatenate([x["features"] for x in inputs])})
    for i, reply in enumerate(replies):
        assert reply.status == 200, reply.body
        out = V2RestCodec(True).decode_response(reply.body, reply.headers).outputs["score"]
        assert same(out, merged["score"][3 * i : 3 * i + 3])
        assert reply.timing["batch"] > 0 and set(INFER_PHASES) <= set(reply.timing)
    app.service.close()


def test_not_ready_until_the_service_is(loop, mlp):
    app = make_app(mlp, ready=False)
    body, headers = v2_body(mlp_inputs(1))
    assert run(loop, app, "GET", "/v2/health/ready").status == 503
    assert run(loop, app, "GET", "/v2/health/ready").json() == {"ready": False}
    assert run(loop, app, "GET", "/v2/models/mlp/ready").status == 503
    assert run(loop, app, "GET", "/v2/health/live").status == 200
    status = run(loop, app, "GET", "/v1/models/mlp").json()
    assert status["model_version_status"][0]["state"] == "LOADING"
    refused = run(loop, app, "POST", "/v2/models/mlp/infer", body, headers)
    assert refused.status == 503 and "not ready" in refused.json()["error"]
    app.service.ready = True
    assert run(loop, app, "POST", "/v2/models/mlp/infer", body, headers).status == 200


def test_lifespan_is_acknowledged(loop, app):
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message["type"])

    loop.run_until_complete(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

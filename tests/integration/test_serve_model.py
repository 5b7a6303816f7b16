"""``caliper serve-model`` as a separate process, called with curl and the official clients.

Each server process binds 127.0.0.1 with ports 0 and announces itself through its ready
file; servers are started once per session. Tensors coming back must equal the in-process
``runtime.predict`` of the same model bit for bit.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelcaliper.server.runtimes import open_runtime
from modelcaliper.server.timing import parse_server_timing
from modelcaliper.wire.openinference_rest import V2RestCodec
from modelcaliper.wire.tensors import InferRequest
from modelcaliper.wire.tfserving_rest import TFServingRestCodec
from tests.models import build_onnx_mlp, build_tf_ranking_model, mlp_inputs, ranking_inputs

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 120.0
INFER_PHASES = {"recv", "decode", "queue", "batch", "compute", "encode", "total"}


@dataclass
class Server:
    """A running ``caliper serve-model`` process and what its ready file says."""

    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    model_name: str
    stderr_path: Path
    ready_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def log_events(self) -> list[dict]:
        return [json.loads(line) for line in self.stderr_path.read_text().splitlines()]


def caliper(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelcaliper.cli.main", *args]


def start_server(model: Path, workdir: Path, *extra: str) -> Server:
    """Start a server on free ports and wait for its ready file."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready, stderr_path = workdir / "ready.json", workdir / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            caliper("serve-model", str(model), "--host", "127.0.0.1", "--http-port", "0",
                    "--grpc-port", "0", "--ready-file", str(ready), *extra),
            stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {stderr_path.read_text()}")
        time.sleep(0.05)
    doc = json.loads(ready.read_text())
    assert set(doc) == {"http_port", "grpc_port", "pid", "model_name"} and doc["pid"] == proc.pid
    return Server(proc, doc["http_port"], doc["grpc_port"], doc["model_name"], stderr_path, ready)


def finish(server: Server) -> None:
    """Stop a session server and check it left cleanly: exit 0, JSON logs, no ready file."""
    code = server.stop()
    assert code == 0, server.stderr_path.read_text()
    events = [e["event"] for e in server.log_events()]
    assert events[0] == "start" and {"ready", "stop", "stopped"} <= set(events)
    assert not server.ready_file.exists()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return b.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def curl(url: str, body: bytes | None = None, *headers: str, extra: tuple[str, ...] = ()):
    """``curl -i``: status, lower-cased headers and the body."""
    cmd = ["curl", "-sS", "-i", "--max-time", "30", "-H", "Expect:", url, *extra]
    for header in headers:
        cmd += ["-H", header]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    out = subprocess.run(cmd, input=body, capture_output=True, check=True).stdout
    head, _, payload = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, payload


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def mlp_model(tmp_path_factory) -> Path:
    return build_onnx_mlp(tmp_path_factory.mktemp("serve") / "mlp.onnx")


@pytest.fixture(scope="session")
def mlp_runtime(mlp_model):
    return open_runtime(mlp_model)


@pytest.fixture(scope="session")
def mlp_server(mlp_model, tmp_path_factory) -> Iterator[Server]:
    server = start_server(mlp_model, tmp_path_factory.mktemp("mlp-server"),
                          "--warmup-requests", "2")
    yield server
    finish(server)


@pytest.fixture(scope="session")
def ranking_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tf") / "ranker"
    build_tf_ranking_model(base, version=1)
    build_tf_ranking_model(base, version=2)
    return base


@pytest.fixture(scope="session")
def ranking_server(ranking_base, tmp_path_factory) -> Iterator[Server]:
    server = start_server(ranking_base, tmp_path_factory.mktemp("tf-server"),
                          "--intra-op-threads", "1", "--inter-op-threads", "1")
    yield server
    finish(server)


# --------------------------------------------------------------------------- REST with curl


def test_model_name_defaults_to_the_artifact(mlp_server, ranking_server):
    assert mlp_server.model_name == "mlp" and ranking_server.model_name == "ranker"


@pytest.mark.parametrize("fmt", ["rows", "columnar"])
def test_curl_tf_rest_predict(mlp_server, mlp_runtime, fmt):
    inputs = mlp_inputs(25, seed=7)
    codec = TFServingRestCodec(fmt, signature=mlp_runtime.signature)
    body = codec.encode_request(InferRequest(inputs)).body
    status, headers, payload = curl(f"{mlp_server.url}/v1/models/mlp:predict", body,
                                    "content-type: application/json", "x-request-id: c-1")
    assert status == 200, payload
    assert headers["x-request-id"] == "c-1"
    assert INFER_PHASES <= set(parse_server_timing(headers["server-timing"]))
    assert same(codec.decode_response(payload).outputs["score"],
                mlp_runtime.predict(inputs)["score"])


@pytest.mark.parametrize("binary", [False, True])
def test_curl_v2_rest_infer_with_compressed_answer(mlp_server, mlp_runtime, binary):
    inputs = mlp_inputs(400, seed=8)  # large enough for the answer to be compressed
    encoded = V2RestCodec(binary).encode_request(InferRequest(inputs))
    headers = [f"{k}: {v}" for k, v in encoded.headers]
    status, answer_headers, payload = curl(f"{mlp_server.url}/v2/models/mlp/infer",
                                           encoded.body, *headers, "accept-encoding: gzip")
    assert status == 200, payload
    assert answer_headers["content-encoding"] == "gzip"
    response = V2RestCodec(binary).decode_response(gzip.decompress(payload), answer_headers)
    assert same(response.outputs["score"], mlp_runtime.predict(inputs)["score"])


def test_curl_status_metadata_and_errors(mlp_server):
    status, _, payload = curl(f"{mlp_server.url}/v1/models/mlp")
    assert status == 200 and json.loads(payload)["model_version_status"][0]["state"] == "AVAILABLE"
    status, _, payload = curl(f"{mlp_server.url}/v2/models/mlp")
    assert status == 200 and json.loads(payload)["inputs"][0]["name"] == "features"
    status, headers, payload = curl(f"{mlp_server.url}/v1/models/mlp:predict", b'{"instances": 1}')
    assert status == 400 and "error" in json.loads(payload) and "server-timing" in headers
    status, _, _ = curl(f"{mlp_server.url}/v2/models/other/infer", b"{}")
    assert status == 404


def test_metrics_count_rest_and_grpc_requests(mlp_server):
    import tritonclient.grpc as tritongrpc

    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{mlp_server.grpc_port}")
    feed = tritongrpc.InferInput("features", [1, 300], "FP32")
    feed.set_data_from_numpy(mlp_inputs(1)["features"])
    client.infer("mlp", [feed])
    curl(f"{mlp_server.url}/v2/models/mlp/infer", b"{}")
    for path in ("/metrics", "/monitoring/prometheus/metrics"):
        with urllib.request.urlopen(mlp_server.url + path, timeout=10) as reply:
            text = reply.read().decode()
        assert 'entrypoint="REST"' in text and 'entrypoint="GRPC"' in text
        assert ':tensorflow:serving:request_count{model_name="mlp",status="INVALID_ARGUMENT"}' \
            in text


def test_endless_headers_are_cut_off(mlp_server):
    with socket.create_connection(("127.0.0.1", mlp_server.http_port), timeout=10) as conn:
        conn.sendall(b"GET /v2 HTTP/1.1\r\nhost: x\r\nx-big: ")
        with pytest.raises(OSError):  # the server hangs up once the head passes its limit
            for _ in range(4096):
                conn.sendall(b"a" * 65536)
        assert conn.recv(4096).startswith(b"HTTP/1.1 431")
    assert curl(f"{mlp_server.url}/v2/health/live")[0] == 200


# --------------------------------------------------------------------------- official clients


@pytest.mark.interop
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_http(mlp_server, mlp_runtime, binary):
    import tritonclient.http as tritonhttp

    client = tritonhttp.InferenceServerClient(f"127.0.0.1:{mlp_server.http_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mlp")
    assert client.get_model_metadata("mlp")["inputs"][0]["shape"] == [-1, 300]
    inputs = mlp_inputs(25, seed=9)
    feed = tritonhttp.InferInput("features", [25, 300], "FP32")
    feed.set_data_from_numpy(inputs["features"], binary_data=binary)
    wanted = [tritonhttp.InferRequestedOutput("score", binary_data=binary)]
    result = client.infer("mlp", [feed], outputs=wanted, request_id="t-1")
    assert result.get_response()["id"] == "t-1"
    assert same(result.as_numpy("score"), mlp_runtime.predict(inputs)["score"])


@pytest.mark.interop
def test_tritonclient_grpc(mlp_server, mlp_runtime):
    import tritonclient.grpc as tritongrpc

    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{mlp_server.grpc_port}")
    assert client.is_server_ready() and client.is_model_ready("mlp")
    inputs = mlp_inputs(25, seed=10)
    feed = tritongrpc.InferInput("features", [25, 300], "FP32")
    feed.set_data_from_numpy(inputs["features"])
    result = client.infer("mlp", [feed])
    assert same(result.as_numpy("score"), mlp_runtime.predict(inputs)["score"])


@pytest.mark.interop
def test_tf_serving_grpc_stubs(ranking_server, ranking_base):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    runtime = open_runtime(ranking_base)
    inputs = ranking_inputs(6, seed=2)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ranker"
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    with grpc.insecure_channel(f"127.0.0.1:{ranking_server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply, call = stub.Predict.with_call(request, timeout=30,
                                             metadata=[("x-request-id", "g-1")])
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=request.model_spec), timeout=30)
    expected = runtime.predict(inputs)
    for name, array in expected.items():
        assert same(tf.make_ndarray(reply.outputs[name]), array), name
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "g-1"
    assert {"transform", "model"} <= set(parse_server_timing(trailing["server-timing"]))
    assert [v.version for v in status.model_version_status] == [2]


def test_curl_tf_model_rows_with_strings(ranking_server, ranking_base):
    runtime = open_runtime(ranking_base)
    inputs = ranking_inputs(4, seed=5)
    codec = TFServingRestCodec("rows", signature=runtime.signature)
    body = codec.encode_request(InferRequest(inputs)).body
    status, headers, payload = curl(f"{ranking_server.url}/v1/models/ranker/versions/2:predict",
                                    body)
    assert status == 200, payload
    assert {"transform", "model"} <= set(parse_server_timing(headers["server-timing"]))
    outputs = codec.decode_response(payload).outputs
    assert all(same(outputs[n], a) for n, a in runtime.predict(inputs).items())
    status, _, _ = curl(f"{ranking_server.url}/v1/models/ranker/versions/1:predict", body)
    assert status == 404  # the base path serves its highest version only


# --------------------------------------------------------------------------- process life


def build_slow_onnx(path: Path, repeats: int = 2000, layers: int = 6, width: int = 256) -> Path:
    """A model whose compute grows with its rows fast: each row is tiled ``repeats`` times
    through ``layers`` square MatMul + ReLU layers, then everything is averaged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32)
    nodes = [helper.make_node("Tile", ["x", "reps"], ["h0"])]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", [f"h{layers}"], ["y"], axes=[0, 1], keepdims=1))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=[numpy_helper.from_array(weight, "w"),
                     numpy_helper.from_array(np.array([repeats, 1], np.int64), "reps")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def post_v2(url: str, rows: int) -> tuple[int, dict[str, float]]:
    x = np.ones((rows, 256), np.float32)
    encoded = V2RestCodec(True).encode_request(InferRequest({"x": x}))
    request = urllib.request.Request(f"{url}/v2/models/slow/infer", encoded.body,
                                     dict(encoded.headers), method="POST")
    with urllib.request.urlopen(request, timeout=60) as reply:
        return reply.status, parse_server_timing(reply.headers["server-timing"])


def test_sigterm_drains_requests_in_flight(tmp_path):
    model = build_slow_onnx(tmp_path / "slow.onnx")
    server = start_server(model, tmp_path / "run", "--intra-op-threads", "1",
                          "--model-threads", "1", "--warmup-requests", "1")
    try:
        _, phases = post_v2(server.url, 2)
        rows = max(2, min(256, math.ceil(2 * 300.0 / phases["compute"])))  # ~0.3 s each
        results: list[int] = []
        first_done = threading.Event()

        def client() -> None:
            results.append(post_v2(server.url, rows)[0])
            first_done.set()

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        assert first_done.wait(60)
        server.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert server.proc.wait(60) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    assert results == [200, 200, 200]
    stop = next(e for e in server.log_events() if e["event"] == "stop")
    assert stop["signal"] == "SIGTERM" and stop["in_flight"] >= 1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.http_port), timeout=2).close()


def run_failing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(caliper("serve-model", *args), capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_corrupt_artifact_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf")
    result = run_failing(str(bad), "--http-port", "0", "--grpc-port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: DataError:") and "broken.onnx" in lines[0]


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_busy_port_exits_2_naming_it(mlp_model, which):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        other = "grpc" if which == "http" else "http"
        result = run_failing(str(mlp_model), f"--{which}-port", str(port), f"--{other}-port", "0")
    assert result.returncode == 2
    *logs, last = result.stderr.strip().splitlines()
    assert last.startswith("error: UsageError:") and str(port) in last
    assert all(json.loads(line)["event"] for line in logs)  # everything else is JSON


def test_unusable_ready_file_exits_2_before_loading(mlp_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_failing(str(mlp_model), "--http-port", "0", "--grpc-port", "0",
                         "--ready-file", str(blocker / "ready.json"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: UsageError: cannot create the ready file's directory {blocker}: File exists"]


def test_profiler_port_needs_a_tensorflow_model(mlp_model):
    result = run_failing(str(mlp_model), "--http-port", "0", "--grpc-port", "0",
                         "--profiler-port", "6123")
    assert result.returncode == 2 and "TensorFlow" in result.stderr.strip().splitlines()[-1]


# --------------------------------------------------------------------------- command line


def parse(*argv: str):
    from modelcaliper.cli.main import build_parser
    from modelcaliper.cli.serve_model import build_config

    return build_config(build_parser().parse_args(["serve-model", "m.onnx", *argv]))


def test_command_line_defaults_follow_tf_serving():
    config = parse()
    assert (config.http_port, config.grpc_port, config.host) == (8501, 8500, "127.0.0.1")
    assert config.batching is None and config.split_timing is True
    assert config.max_body_bytes == 64 * 1024 * 1024


def test_command_line_batching_flags(tmp_path):
    config = parse("--enable-batching", "--max-batch-size", "32", "--allowed-batch-sizes",
                   "8,32", "--pad-variable-length-inputs", "--max-body-mb", "0.5")
    assert config.batching.max_batch_size == 32 and config.batching.allowed_batch_sizes == (8, 32)
    assert config.batching.pad_variable_length_inputs and config.max_body_bytes == 512 * 1024
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\n")
    from_file = parse("--enable-batching", "--batching-parameters", str(params))
    assert (from_file.batching.max_batch_size, from_file.batching.batch_timeout_micros) == (16, 500)


@pytest.mark.parametrize(("argv", "message"), [
    # batching knobs without batching
    (("--max-batch-size", "8"), "--enable-batching"),
    # a file and a flag for the same thing
    (("--enable-batching", "--batching-parameters", "f.txt", "--num-batch-threads", "2"),
     "cannot be combined"),
    # sizes that are not numbers
    (("--enable-batching", "--allowed-batch-sizes", "8,x"), "whole numbers"),
    # the last allowed size must be max_batch_size
    (("--enable-batching", "--max-batch-size", "64", "--allowed-batch-sizes", "8,32"), "64"),
    # ports and limits out of range
    (("--http-port", "70000"), "http_port"),
    (("--max-body-mb", "0"), "--max-body-mb"),
    (("--model-threads", "0"), "model_threads"),
    (("--profiler-port", "0"), "profiler_port"),
])
def test_command_line_mistakes_are_usage_errors(argv, message):
    from modelcaliper.errors import UsageError

    with pytest.raises(UsageError, match=message):
        parse(*argv)

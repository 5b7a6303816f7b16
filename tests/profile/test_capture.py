"""Profiles under load: the embedded server's admin endpoints and ``capture_under_load``."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.errors import UsageError
from modelcaliper.profile.base import MissingProfile, ProfileResult, read_profile
from modelcaliper.profile.capture import (
    START_PATH,
    STOP_PATH,
    BackgroundCapture,
    ProfileAdmin,
    capture_under_load,
    steady_window,
)
from modelcaliper.targets.base import Endpoint
from tests.profile.builders import DOMINANT_NODE, dominant_matmul_inputs, map_fn_inputs

# ------------------------------------------------------------------- admin endpoints, unit


class FakeOnnxRuntime:
    """Start/stop hooks like the real runtimes'; stop writes ``events`` as the profile."""

    platform = "onnxruntime_onnx"

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.out_dir: Path | None = None

    def start_profiling(self, out_dir: Path) -> None:
        if self.out_dir is not None:
            raise UsageError("profiling is already running; stop it first")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir

    def stop_profiling(self) -> Path:
        if self.out_dir is None:
            raise UsageError("profiling is not running; start it first")
        path, self.out_dir = self.out_dir / "onnxruntime_profile.json", None
        path.write_bytes(orjson.dumps(self.events))
        return path


RUN = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 50, "pid": 1, "tid": 1},
       {"cat": "Node", "name": "gemm_kernel_time", "ts": 1, "dur": 40, "pid": 1, "tid": 1,
        "args": {"op_name": "Gemm"}}]


def _call(admin: ProfileAdmin, path: str, body: Any = None, *, method: str = "POST",
          client: str | None = "127.0.0.1") -> tuple[int, str, dict[str, Any]]:
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    return asyncio.run(admin.handle(path, method, raw, client))


ADMIN_REFUSALS = [
    # (path, body, method, client, status, words in the error)
    # a client on another interface may not make the server write files
    (START_PATH, None, "POST", "10.1.2.3", 403, "loopback"),
    # an unknown client address is refused too
    (START_PATH, None, "POST", None, 403, "loopback"),
    # only POST starts and stops
    (START_PATH, None, "GET", "127.0.0.1", 405, "POST"),
    # an unknown admin route
    ("/caliper/profile/pause", None, "POST", "::1", 404, "no route"),
    # stopping what never started
    (STOP_PATH, None, "POST", "127.0.0.1", 409, "not running"),
    # the output folder must be absolute: the server's working directory is not the caller's
    (START_PATH, {"out_dir": "relative/dir"}, "POST", "127.0.0.1", 400, "absolute"),
    # a body that is not JSON
    (START_PATH, b"{nope", "POST", "127.0.0.1", 400, "JSON"),
]


@pytest.mark.parametrize(("path", "body", "method", "client", "status", "words"), ADMIN_REFUSALS)
def test_admin_refusals(path: str, body: Any, method: str, client: str | None, status: int,
                        words: str) -> None:
    code, _, document = _call(ProfileAdmin(FakeOnnxRuntime(RUN)), path, body, method=method,
                              client=client)
    assert code == status and words in document["error"]


def test_admin_start_stop_and_restart(tmp_path: Path) -> None:
    admin = ProfileAdmin(FakeOnnxRuntime(RUN))
    code, grpc_code, started = _call(admin, START_PATH, {"out_dir": str(tmp_path / "w1")})
    assert (code, grpc_code, started["out_dir"]) == (200, "OK", str(tmp_path / "w1"))
    assert _call(admin, START_PATH, {"out_dir": str(tmp_path / "w2")})[0] == 409
    code, _, stopped = _call(admin, STOP_PATH)
    assert code == 200 and stopped["status"] == "ok"
    result = ProfileResult.from_dict(stopped["profile"])
    assert result.ops[0].name == "gemm" and result.label == "under load"
    assert stopped["window_s"] >= 0
    assert read_profile(stopped["profile_path"]) == result
    assert _call(admin, START_PATH)[0] == 200  # a second window, in a temporary folder
    assert _call(admin, STOP_PATH)[0] == 200


def test_admin_stop_without_converting(tmp_path: Path) -> None:
    admin = ProfileAdmin(FakeOnnxRuntime(RUN))
    _call(admin, START_PATH, {"out_dir": str(tmp_path)})
    code, _, document = _call(admin, STOP_PATH, {"convert": False})
    assert code == 200 and document["status"] == "stopped"
    assert document["platform"] == "onnxruntime_onnx" and document["model_path"] is None
    assert document["raw_path"] == str(tmp_path / "onnxruntime_profile.json")
    assert not (tmp_path / "profile.json").exists()  # nothing converted in the server


def test_admin_stop_of_an_empty_window_is_422_with_the_raw_path(tmp_path: Path) -> None:
    admin = ProfileAdmin(FakeOnnxRuntime([RUN[0] | {"name": "session_initialization"}]))
    _call(admin, START_PATH, {"out_dir": str(tmp_path)})
    code, _, document = _call(admin, STOP_PATH)
    assert code == 422 and "no prediction ran" in document["error"]
    assert document["raw_path"] == str(tmp_path / "onnxruntime_profile.json")


# ------------------------------------------------------- capture_under_load, unprofilable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def plain_http_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers 404 to everything (not ours)."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the handler API's name)
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _grpc_only() -> Endpoint:
    return Endpoint("127.0.0.1:1", "tfserving-grpc", "m", grpc_url="127.0.0.1:1")


MISSING_CASES = [
    # (endpoint, duration, profiler address, words in the reason)
    # an empty window
    ("http://127.0.0.1:9", 0.0, None, "capture window is empty"),
    # nothing listens at the endpoint
    ("closed", 0.2, None, "cannot reach"),
    # a server that is not ours: no admin endpoints
    ("plain", 0.2, None, "does not serve caliper's profiling endpoints"),
    # a gRPC-only target without a profiler address
    ("grpc", 0.2, None, "no HTTP address"),
    # a profiler address where nothing listens
    (None, 0.2, "closed", "no TensorFlow profiler service at 127.0.0.1"),
    # a profiler address that is not host:port
    (None, 0.2, "localhost", "must look like host:port"),
]


@pytest.mark.parametrize(("endpoint", "duration_s", "address", "words"), MISSING_CASES)
def test_unprofilable_targets_give_a_missing_profile(
        plain_http_server: str, tmp_path: Path, endpoint: Any, duration_s: float,
        address: str | None, words: str) -> None:
    closed = f"127.0.0.1:{_free_port()}"
    endpoint = {"closed": f"http://{closed}", "plain": plain_http_server,
                "grpc": _grpc_only()}.get(endpoint, endpoint)
    address = closed if address == "closed" else address
    started_s = time.monotonic()
    result = capture_under_load(endpoint, duration_s, tmp_path / "p", profiler_address=address)
    assert isinstance(result, MissingProfile), result
    assert words in result.reason and "\n" not in result.reason
    assert time.monotonic() - started_s < 10


WINDOWS = [
    # (warm-up s, measured s, window start s, window length s)
    # a quarter into the measured time, half of it long
    (2.0, 8.0, 4.0, 4.0),
    # a long run: the window stops growing at 10 s
    (0.0, 60.0, 15.0, 10.0),
    # no measured time: nothing to profile
    (5.0, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize(("warmup_s", "duration_s", "delay_s", "window_s"), WINDOWS)
def test_steady_window(warmup_s: float, duration_s: float, delay_s: float,
                       window_s: float) -> None:
    assert steady_window(warmup_s, duration_s) == (delay_s, window_s)


def test_background_capture_cancelled_before_its_window(tmp_path: Path) -> None:
    capture = BackgroundCapture("http://127.0.0.1:9", tmp_path, delay_s=30.0,
                                duration_s=1.0).start()
    capture.cancel()
    result = capture.result(timeout_s=5)
    assert result == MissingProfile("the load ended before the profile window began")


# ---------------------------------------------------------- capture_under_load, real servers


class Load:
    """Requests sent back to back from a thread until stopped; counts the answers."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url, self.body, self.ok = url, body, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, data=self.body, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                self.ok += response.status == 200

    def __enter__(self) -> Load:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _instances(inputs: dict[str, Any]) -> bytes:
    (name, values), = inputs.items()
    return orjson.dumps({"instances": values.tolist()})


@pytest.mark.slow
def test_embedded_server_capture_under_load(dominant_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from modelcaliper.targets.embedded import EmbeddedServer

    with EmbeddedServer(dominant_onnx, protocol="tfserving-rest", log_dir=tmp_path) as endpoint:
        url = f"{endpoint.http_url}/v1/models/{endpoint.model}:predict"
        with Load(url, _instances(dominant_matmul_inputs(16))) as load:
            result = capture_under_load(endpoint, 1.0, tmp_path / "profile")
            # a second window, in the background, ended early because the load ends
            background = BackgroundCapture(endpoint, tmp_path / "profile2", delay_s=0.1,
                                           duration_s=60.0).start()
            time.sleep(1.0)
            background.cancel()
            second = background.result(timeout_s=30)
        assert load.ok > 0
    assert isinstance(result, ProfileResult), result
    assert DOMINANT_NODE in result.ops[0].name and result.ops[0].calls > 0
    assert result.window_s is not None and result.window_s >= 1.0
    assert (tmp_path / "profile" / "profile.json").is_file()
    assert read_profile(tmp_path / "profile").to_dict() == result.to_dict()  # type: ignore[union-attr]
    assert isinstance(second, ProfileResult), second
    assert second.window_s is not None and second.window_s < 30


@pytest.mark.slow
def test_remote_tf_profiler_capture(map_fn_models: dict[str, Path], tmp_path: Path) -> None:
    from modelcaliper.targets.embedded import EmbeddedServer

    model = map_fn_models["transform-numeric"]
    port = _free_port()
    with EmbeddedServer(model, protocol="tfserving-rest", log_dir=tmp_path,
                        server_args=["--profiler-port", str(port)]) as endpoint:
        address = f"127.0.0.1:{port}"
        idle = capture_under_load(endpoint, 0.5, tmp_path / "idle", profiler_address=address,
                                  model_path=model)
        url = f"{endpoint.http_url}/v1/models/{endpoint.model}:predict"
        with Load(url, _instances(map_fn_inputs(16))):
            result = capture_under_load(endpoint, 1.5, tmp_path / "busy",
                                        profiler_address=address, model_path=model)
    assert isinstance(idle, MissingProfile), idle
    assert isinstance(result, ProfileResult), result
    assert result.ops[0].name == "StatefulPartitionedCall/transform/map/while"
    assert result.summary().top_group == "transform"
    assert Path(result.trace_path or "").is_file()

"""``LaunchedServer`` and ``ServerProcess``: the user's command, awaited, and stopped for sure."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelcaliper.errors import TargetStartError, UsageError
from modelcaliper.targets import LaunchedServer, ServerProcess
from modelcaliper.targets.launched import describe_exit
from tests.targets.helpers import free_port, gone, port_is_free

PY = sys.executable


def serve_model_command(model: Path, http_port: int, grpc_port: int) -> str:
    """``caliper serve-model`` as a user would type it."""
    return shlex.join([PY, "-m", "modelcaliper.cli.main", "serve-model", str(model),
                       "--http-port", str(http_port), "--grpc-port", str(grpc_port)])


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "ready"), [
    ("v2-rest", "http"),  # HTTP readiness: GET /v2/health/ready answers 200
    ("tfserving-grpc", "grpc"),  # gRPC readiness: the channel connects
])
def test_launches_caliper_serve_model_and_stops_it(model, tmp_path, protocol, ready):
    grpc_port = free_port()
    while not port_is_free(grpc_port + 1):  # TF Serving's layout: REST = gRPC + 1
        grpc_port = free_port()
    http_port = grpc_port + 1
    ready_url = (f"http://127.0.0.1:{http_port}/v2/health/ready" if ready == "http"
                 else f"grpc://127.0.0.1:{grpc_port}")
    target = LaunchedServer(serve_model_command(model, http_port, grpc_port), ready_url,
                            protocol=protocol, model="mlp", timeout_s=120, log_dir=tmp_path)
    with target as endpoint:
        assert endpoint.url == (f"127.0.0.1:{grpc_port}" if ready == "grpc"
                                else f"http://127.0.0.1:{http_port}")
        assert [t.name for t in endpoint.signature.inputs] == ["features"]
        # Its metrics were found: /metrics on the REST port, or from the gRPC port the
        # REST port guessed as the next one, where TF Serving's path comes first.
        assert endpoint.metrics_url == (
            f"http://127.0.0.1:{http_port}/monitoring/prometheus/metrics" if ready == "grpc"
            else f"http://127.0.0.1:{http_port}/metrics")
        assert endpoint.pinning["server_cpus"] is None
        pid = endpoint.pid
        assert target.exit_code() is None
    assert gone(pid, 0) and target.exit_code() == 0
    assert '"event":"stopped"' in target.logs_tail(1)[0]
    assert (tmp_path / "server.log").exists()


EARLY_EXITS = [
    # a plain exit code, with what the server printed last
    (f"{PY} -c \"import sys; print('loading'); print('fatal: bad config', file=sys.stderr); "
     "sys.exit(3)\"", "exited with code 3", "fatal: bad config"),
    # killed by a signal
    (f"{PY} -c \"import os, signal; os.kill(os.getpid(), signal.SIGKILL)\"",
     "was killed by SIGKILL", "it logged nothing"),
    # a caliper-style one-line error is surfaced without its 'error: ' prefix
    (f"{PY} -c \"import sys; print('error: UsageError: port busy', file=sys.stderr); "
     "sys.exit(2)\"", "exited with code 2", ": UsageError: port busy"),
]


@pytest.mark.parametrize(("command", "how", "detail"), EARLY_EXITS)
def test_an_early_exit_names_the_exit_and_the_last_log_line(command, how, detail):
    target = LaunchedServer(command, f"http://127.0.0.1:{free_port()}/ready",
                            protocol="v2-rest", model="m", timeout_s=30)
    with pytest.raises(TargetStartError) as caught:
        target.open()
    message = str(caught.value)
    assert message.startswith(f"the launched command {how} before it was ready")
    assert detail in message and "\n" not in message
    assert caught.value.exit_code == 2
    assert target.process is not None and gone(target.process.pid, 0)


def test_the_environment_reaches_the_command():
    command = f"{PY} -c \"import os, sys; print('flag=' + os.environ['CALIPER_FLAG']); " \
              "sys.exit(1)\""
    target = LaunchedServer(command, f"http://127.0.0.1:{free_port()}/",
                            protocol="v2-rest", model="m", env={"CALIPER_FLAG": "on"})
    with pytest.raises(TargetStartError, match="last log line: flag=on"):
        target.open()
    assert target.logs_tail() == ["flag=on"]


def test_a_server_that_never_gets_ready_times_out_and_is_stopped():
    target = LaunchedServer(f"{PY} -c \"import time; time.sleep(120)\"",
                            f"http://127.0.0.1:{free_port()}/ready", protocol="v2-rest",
                            model="m", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(TargetStartError, match=r"was not ready within 1 s \(waiting for http"):
        target.open()
    assert time.monotonic() - started < 10
    assert gone(target.process.pid, 0)
    assert target.exit_code() == -15  # SIGTERM was enough


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture()
def busy_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ready"
    server.shutdown()
    server.server_close()


def test_a_ready_url_that_already_answers_is_refused_before_starting(busy_url):
    target = LaunchedServer(f"{PY} -c pass", busy_url, protocol="v2-rest", model="m")
    with pytest.raises(TargetStartError, match="already answers before the command started"):
        target.open()
    assert target.process is None


@pytest.mark.parametrize(("command", "ready_url", "match"), [
    ("", "http://127.0.0.1:1/", "needs a command"),  # nothing to run
    ("no-such-server-binary --port 1", "http://127.0.0.1:1/", "not found"),  # not on PATH
    (f"{PY} -c pass", "127.0.0.1:8501", "must be http://host:port"),  # no scheme
    (f"{PY} -c pass", "grpc://127.0.0.1", "must be http://host:port"),  # gRPC without port
])
def test_bad_launch_input(command, ready_url, match):
    with pytest.raises(UsageError, match=match):
        LaunchedServer(command, ready_url, protocol="v2-rest", model="m").open()


def test_a_grpc_protocol_needs_a_grpc_address():
    with pytest.raises(UsageError, match="needs the server's gRPC address"):
        LaunchedServer(f"{PY} -c pass", "http://127.0.0.1:1/ready", protocol="v2-grpc",
                       model="m")


def wait_for_line(process: ServerProcess, prefix: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in process.logs_tail(5):
            if line.startswith(prefix):
                return line
        time.sleep(0.02)
    raise AssertionError(f"no line starting with {prefix!r}: {process.logs_tail(5)}")


def test_stop_kills_the_whole_process_group():
    process = ServerProcess(grace_period_s=5.0)
    process.start(["sh", "-c", "sleep 300 & echo child $!; wait"])
    child = int(wait_for_line(process, "child ").split()[1])
    assert not gone(child, 0)
    process.stop()
    assert gone(child, 0) and gone(process.pid, 0)
    assert process.logs_tail() == [f"child {child}"]  # kept after the directory is gone
    assert not process.log_path.parent.exists()


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period():
    process = ServerProcess(grace_period_s=0.5)
    process.start([PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                   "signal.SIG_IGN); print('up', flush=True); time.sleep(120)"])
    wait_for_line(process, "up")
    started = time.monotonic()
    assert process.stop() == -9
    assert 0.4 < time.monotonic() - started < 5
    assert process.stop() == -9  # idempotent


@pytest.mark.parametrize(("code", "text"), [
    (0, "exited with code 0"),  # clean
    (3, "exited with code 3"),  # failure
    (-9, "was killed by SIGKILL"),  # a known signal
    (-200, "was killed by signal 200"),  # not a signal Python knows
])
def test_describe_exit(code, text):
    assert describe_exit(code) == text

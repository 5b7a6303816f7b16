"""``EmbeddedServer``: ``caliper serve-model`` started on free ports, pinned, stopped for sure."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from modelcaliper.errors import DataError, TargetStartError, UsageError
from modelcaliper.targets import EmbeddedServer, MetricsScraper
from modelcaliper.targets.affinity import CpuPlan, available_cpus, cpus_of, plan_cpus
from tests.targets.helpers import N_INPUTS, gone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def infer_v2(url: str, rows: int) -> None:
    body = json.dumps({"inputs": [{"name": "features", "shape": [rows, N_INPUTS],
                                   "datatype": "FP32", "data": [0.25] * (rows * N_INPUTS)}]})
    request = urllib.request.Request(f"{url}/v2/models/mlp/infer", data=body.encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.mark.parametrize(("protocol", "grpc"), [
    ("v2-rest", False),  # REST: the HTTP URL
    ("tfserving-grpc", True),  # gRPC: host:port
])
def test_open_serves_the_model_and_close_stops_it(model, tmp_path, protocol, grpc):
    target = EmbeddedServer(model, protocol=protocol, log_dir=tmp_path,
                            cpus=plan_cpus(pin=False))
    with target as endpoint:
        assert endpoint.model == "mlp" and endpoint.protocol == protocol
        assert endpoint.url == (endpoint.grpc_url if grpc else endpoint.http_url)
        assert endpoint.http_url.startswith("http://127.0.0.1:")
        assert endpoint.grpc_url.startswith("127.0.0.1:")
        assert endpoint.metrics_url == f"{endpoint.http_url}/metrics"
        assert [t.name for t in endpoint.signature.inputs] == ["features"]
        assert target.exit_code() is None
        pid = endpoint.pid
        assert pid is not None and not gone(pid, 0)
    assert gone(pid, 0)
    assert target.exit_code() == 0  # SIGTERM: drained and exited cleanly
    events = [json.loads(line)["event"] for line in (tmp_path / "server.log").read_text()
              .splitlines()]
    assert events[0] == "start" and events[-1] == "stopped"
    assert target.logs_tail(1) == [(tmp_path / "server.log").read_text().splitlines()[-1]]
    target.close()  # again: nothing to do


def test_model_name_version_and_server_args_reach_the_server(model, tmp_path):
    with EmbeddedServer(model, protocol="tfserving-rest", model_name="ranker", version=3,
                        server_args=["--model-threads", "2"], cpus=CpuPlan()) as endpoint:
        with urllib.request.urlopen(f"{endpoint.url}/v1/models/ranker/versions/3") as answer:
            status = json.loads(answer.read())
    assert endpoint.model == "ranker"
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.skipif(len(available_cpus()) < 2, reason="pinning apart needs two CPUs")
def test_default_pinning_splits_server_and_generator(model):
    before = os.sched_getaffinity(0)
    plan = plan_cpus()  # what the target decides by default, asked before it pins us
    target = EmbeddedServer(model, protocol="v2-rest")
    with target as endpoint:
        assert endpoint.pinning == plan.to_dict()
        assert cpus_of(endpoint.pid) == plan.server_cpus
        # Every thread of the server inherited the set from the launcher.
        for task in Path(f"/proc/{endpoint.pid}/task").iterdir():
            assert os.sched_getaffinity(int(task.name)) == set(plan.server_cpus)
        assert os.sched_getaffinity(0) == set(plan.client_cpus)
    assert os.sched_getaffinity(0) == before  # this process gets its CPUs back


def test_explicit_server_cpus(model):
    cpu = available_cpus()[0]
    with EmbeddedServer(model, protocol="v2-rest",
                        cpus=CpuPlan(server_cpus=(cpu,), note="test")) as endpoint:
        assert cpus_of(endpoint.pid) == (cpu,)
        assert endpoint.pinning == {"server_cpus": str(cpu), "client_cpus": None,
                                    "note": "test"}


def test_a_corrupt_model_surfaces_the_servers_one_line_error(tmp_path):
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"this is not a model")
    target = EmbeddedServer(corrupt, protocol="v2-rest", cpus=CpuPlan())
    started = time.monotonic()
    with pytest.raises(TargetStartError) as caught:
        target.open()
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert message.startswith("the embedded server exited with code 2 before it was ready "
                              "(waiting for its ready file): DataError: cannot read ONNX model")
    assert "\n" not in message
    assert caught.value.exit_code == 2
    assert caught.value.log_tail[-1].startswith("error: DataError: cannot read ONNX model")
    assert target.exit_code() == 2


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    # no such path: caught before anything starts
    (dict(model_path="/nonexistent/model.onnx"), DataError, "does not exist"),
    # not a model file
    (dict(model_path=__file__), DataError, "not a model file"),
    # an unknown protocol
    (dict(protocol="http"), UsageError, "--protocol must be one of"),
    # a flag the target sets itself
    (dict(server_args=["--http-port", "9000"]), UsageError, "--http-port is set by"),
])
def test_bad_input_fails_before_starting(model, kwargs, error, match):
    arguments = {"model_path": model, "protocol": "v2-rest", **kwargs}
    with pytest.raises(error, match=match):
        target = EmbeddedServer(arguments.pop("model_path"), **arguments)
        target.open()


def test_a_start_timeout_stops_the_server(model):
    target = EmbeddedServer(model, protocol="v2-rest", start_timeout_s=0.2, cpus=CpuPlan())
    with pytest.raises(TargetStartError, match=r"was not ready within 0.2 s"):
        target.open()
    assert target.process is not None and gone(target.process.pid, 0)


def test_ctrl_c_while_waiting_stops_the_server(model):
    target = EmbeddedServer(model, protocol="v2-rest", cpus=CpuPlan())
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            target.open()
    finally:
        timer.cancel()
    assert target.process is not None and target.process.pid is not None
    assert gone(target.process.pid, 0)


HELPER = """\
import sys, time
from modelcaliper.targets import EmbeddedServer
from modelcaliper.targets.affinity import CpuPlan
target = EmbeddedServer(sys.argv[1], protocol="v2-rest", cpus=CpuPlan())
endpoint = target.open()
print(endpoint.pid, target.process.workdir, flush=True)
time.sleep(300)
"""


def test_the_server_dies_with_a_killed_parent(model, tmp_path):
    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(HELPER))
    helper = subprocess.Popen([sys.executable, str(script), str(model)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        pid_text, workdir = helper.stdout.readline().split()
        server_pid = int(pid_text)
        assert not gone(server_pid, 0)
    finally:
        helper.kill()  # SIGKILL: no atexit, no finally in the helper
        helper.wait()
    assert gone(server_pid)
    # The kernel's SIGTERM stopped it cleanly; only the helper's scratch directory is left.
    assert '"event":"stopped"' in (Path(workdir) / "server.log").read_text()
    shutil.rmtree(workdir)


def test_scraping_our_server_before_and_after_requests(model):
    requests, rows = 12, 3
    with EmbeddedServer(model, protocol="v2-rest", cpus=CpuPlan()) as endpoint:
        scraper = MetricsScraper(endpoint.metrics_url)
        assert scraper.before().exposition is not None
        for _ in range(requests):
            infer_v2(endpoint.url, rows)
        result = scraper.after()
    assert result["available"] is True
    # Every request counts, the first scrape's own GET /metrics included.
    assert result["counters"][
        ':tensorflow:serving:request_count{model_name="mlp",status="OK"}'] == requests + 1
    kinds = result["histograms"]
    [latency] = kinds["request_latency_ms"]
    assert latency["labels"] == {"API": "infer", "entrypoint": "REST", "model_name": "mlp"}
    assert latency["count"] == requests
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] < 10_000
    assert 0 < latency["mean"] < 10_000
    [batch] = kinds["batch_size_rows"]
    assert batch["mean"] == rows and batch["count"] == requests
    phases = {entry["labels"]["phase"]: entry for entry in kinds["phases_ms"]}
    assert {"decode", "queue", "compute", "encode", "total"} <= set(phases)
    assert all(entry["count"] == requests for entry in phases.values())
    assert phases["compute"]["mean"] <= phases["total"]["mean"]
    assert kinds["runtime_latency_ms"][0]["count"] == requests

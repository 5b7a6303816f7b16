"""``caliper run --target`` against the embedded model server, started as its own process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.main import main
from modelcaliper.stats.hlog import read_hlog
from tests.models import build_onnx_mlp

ROOT = Path(__file__).resolve().parents[2]
MODEL = "mlp"
N_INPUTS = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """``caliper serve-model`` on a small ONNX MLP, on free ports of 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("serve")
    model = build_onnx_mlp(workdir / f"{MODEL}.onnx", n_inputs=N_INPUTS, hidden=(8,))
    ready = workdir / "ready.json"
    log = (workdir / "stderr.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelcaliper.cli.main", "serve-model", str(model),
         "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
         "--ready-file", str(ready)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve-model did not start: {(workdir / 'stderr.log').read_text()}")
            time.sleep(0.1)
        yield json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def free_port() -> int:
    """A port nothing listens on (bound and released again)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target(server: dict[str, int], protocol: str) -> str:
    if protocol.endswith("grpc"):
        return f"127.0.0.1:{server['grpc_port']}"
    return f"http://127.0.0.1:{server['http_port']}"


def caliper(*argv: str) -> int:
    return main(["run", "--no-store", *argv])


PROTOCOL_RUNS = [
    # TF Serving REST, row format, gzip bodies
    ("tfserving-rest", ["--encoding", "rows", "--compression", "gzip"]),
    # TF Serving REST, columnar
    ("tfserving-rest", ["--encoding", "columnar"]),
    # v2 REST with the binary tensor extension
    ("v2-rest", ["--encoding", "binary"]),
    # TF Serving gRPC with per-call deflate
    ("tfserving-grpc", ["--compression", "deflate"]),
    # v2 gRPC
    ("v2-grpc", []),
]


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "extra"), PROTOCOL_RUNS)
def test_run_against_each_protocol(server: dict[str, int], tmp_path: Path, protocol: str,
                                   extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.json"
    code = caliper("--target", target(server, protocol), "--protocol", protocol,
                   "--model", MODEL, "--synthetic", "--rps", "40", "--duration", "1s",
                   "--warmup", "250ms", "--batch-size", "4", "--json", str(out),
                   "--records", str(tmp_path / "rec"), "--hlog", str(tmp_path / "run.hlog"),
                   *extra)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    summary = orjson.loads(out.read_bytes())
    requests = summary["requests"]
    assert requests["scheduled"] == requests["sent"] == requests["ok"] == 40
    assert requests["warmup"] == 10
    assert summary["target"]["kind"] == "existing"
    assert {k: summary["target"][k] for k in ("url", "protocol", "model")} == {
        "url": target(server, protocol), "protocol": protocol, "model": MODEL}
    assert summary["throughput"]["rows_per_s"] == pytest.approx(160, rel=0.1)
    # the server's phases came back (Server-Timing / trailing metadata) and were split out
    assert summary["phases_ms"]["total"]["count"] == 40
    assert summary["phases_ms"]["network"]["count"] == 40
    assert summary["latency_ms"]["p50"] > 0
    table = pq.read_table(tmp_path / "rec" / "requests-w0.parquet")
    assert table.num_rows == 50
    assert pa.compute.all(pa.compute.equal(table["status"], "ok")).as_py()
    assert sum(i.histogram.count for i in read_hlog(tmp_path / "run.hlog").intervals) == 40
    # the terminal summary went to stdout
    assert "latency ms" in printed.out and "phase" in printed.out


@pytest.mark.slow
def test_fanned_out_queries_with_a_deadline(server: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    code = caliper("--target", target(server, "v2-rest"), "--protocol", "v2-rest",
                   "--model", MODEL, "--synthetic", "--rps", "10", "--requests", "8",
                   "--candidates", "20", "--batch-size", "8", "--deadline", "2s",
                   "--json", str(out))
    assert code == 0
    summary = orjson.loads(out.read_bytes())
    assert summary["queries"]["count"] == 8
    assert summary["queries"]["deadline_misses"] == 0
    assert summary["requests"]["ok"] == 24  # 3 requests per query: 8 + 8 + 4 rows
    assert summary["throughput"]["rows_per_s"] > 0


@pytest.mark.slow
def test_two_worker_processes_from_the_command_line(server: dict[str, int],
                                                    tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "modelcaliper.cli.main", "run", "--target",
         target(server, "v2-grpc"), "--protocol", "v2-grpc", "--model", MODEL, "--synthetic",
         "--rps", "60", "--duration", "1s", "--workers", "2", "--json", str(out),
         "--no-store"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(out.read_bytes())
    assert summary["requests"]["ok"] == 60
    assert [w["worker"] for w in summary["generator"]["workers"]] == [0, 1]
    assert "generator" in done.stdout


UNREACHABLE = ["tfserving-rest", "v2-grpc"]


@pytest.mark.parametrize("protocol", UNREACHABLE)
def test_unreachable_target_is_one_line_exit_2(protocol: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"127.0.0.1:{port}" if protocol.endswith("grpc") else f"http://127.0.0.1:{port}"
    code = caliper("--target", url, "--protocol", protocol, "--model", MODEL, "--rps", "5",
                   "--duration", "1s")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: TargetError:") and f"127.0.0.1:{port}" in err


@pytest.mark.slow
def test_fanout_larger_than_the_data_exits_2(server: dict[str, int], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.parquet"
    # Ten rows that fit the model's inputs: only their number is wrong for 50 candidates.
    pq.write_table(pa.table({spec.name: [[0.5] * max(1, spec.shape[-1])] * 10
                             if len(spec.shape) > 1 else [0.5] * 10
                             for spec in _input_specs(server)}), data)
    code = caliper("--target", target(server, "tfserving-rest"), "--protocol",
                   "tfserving-rest", "--model", MODEL, "--data", str(data), "--rps", "5",
                   "--duration", "1s", "--candidates", "50", "--batch-size", "10")
    err = capsys.readouterr().err
    assert code == 2
    assert "--candidates 50 needs at least 50 rows" in err


@pytest.mark.slow
def test_every_request_failing_exits_1(server: dict[str, int], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # a signature the model does not have: the server refuses every request (HTTP 400)
    signature = tmp_path / "wrong.json"
    signature.write_text(json.dumps({"inputs": [{"name": "nope", "dtype": "float32",
                                                 "shape": [-1, 3]}]}))
    out = tmp_path / "run.json"
    code = caliper("--target", target(server, "v2-rest"), "--protocol", "v2-rest",
                   "--model", MODEL, "--signature", str(signature), "--rps", "20",
                   "--requests", "10", "--json", str(out))
    captured = capsys.readouterr()
    assert code == 1
    summary = orjson.loads(out.read_bytes())
    assert summary["requests"]["errors"] == 10 and summary["requests"]["ok"] == 0
    assert list(summary["errors_by_kind"]) == ["http_400"]
    assert summary["error_examples"]["http_400"]
    assert "http_400 ×10" in captured.out
    assert "every request failed" in captured.err


def _input_specs(server: dict[str, int]) -> list[Any]:
    from modelcaliper.load.health import probe_target

    return list(probe_target(target(server, "v2-rest"), "v2-rest", MODEL).inputs)


def test_usage_errors_name_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--protocol", "v2-grpc", "--encoding", "json"], "--encoding does not apply to v2-grpc"),
        (["--protocol", "v2-rest", "--encoding", "rows"], "--encoding for v2-rest must be"),
        (["--protocol", "v2-rest", "--compression", "brotli"], "unknown compression 'brotli'"),
        (["--protocol", "v2-rest", "--pool-mb", "0"], "--pool-mb must be > 0"),
        (["--protocol", "tfserving-grpc", "--compression", "zstd"], "zstd is HTTP-only"),
    ]
    for extra, message in cases:
        code = caliper("--target", "http://127.0.0.1:9", "--model", MODEL, "--rps", "5", *extra)
        err = capsys.readouterr().err
        assert code == 2, extra
        assert message in err, (extra, err)

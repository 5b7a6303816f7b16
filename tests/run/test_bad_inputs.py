"""Bad input to ``caliper run``: one line, exit 2, before any load, nothing left behind."""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.main import main
from tests.run.helpers import no_run_left
from tests.targets.helpers import free_port


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """Something already answering HTTP 200 on a port of 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def exiting_command(code: int) -> str:
    return shlex.join([sys.executable, "-c",
                       f"import sys; print('error: the port is taken'); sys.exit({code})"])


def run_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", *argv, "--quiet", "--rps", "5", "--duration", "1s",
                 "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert out == ""
    return code, err


def test_bad_inputs_are_one_line_exit_2_before_any_load(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unsupported = tmp_path / "weights.txt"
    unsupported.write_text("not a model")
    config = tmp_path / "caliper.toml"
    config.write_text("candidatess = 1000\n")
    port = free_port()
    cases: list[tuple[list[str], str]] = [
        # a model path that does not exist
        ([str(tmp_path / "missing.onnx")], "DataError: model path"),
        # a file that is no model
        ([str(unsupported)], "is not a model file this tool can serve"),
        # nothing to run against
        ([], "nothing to run against"),
        # a server that is not there
        (["--target", f"127.0.0.1:{port}", "--protocol", "v2-grpc", "--model", "mlp"],
         f"TargetError: cannot reach 127.0.0.1:{port}"),
        # a launched command that exits before it is ready
        (["--launch", exiting_command(3), "--ready-url", f"http://127.0.0.1:{port}/ready",
          "--protocol", "v2-rest", "--model", "mlp"],
         "the launched command exited with code 3 before it was ready"),
        # --launch without its readiness URL
        (["--launch", "true", "--protocol", "v2-rest", "--model", "mlp"],
         "--launch needs --ready-url too"),
        # a bad assertion
        ([str(model), "--assert", "p99<120"], "--assert 'p99<120': 'p99' is a time"),
        # an assertion the run can never have
        ([str(model), "--assert", "deadline_miss_rate<1%"], "needs a query deadline"),
        # an unknown config key, with the closest one
        ([str(model), "-c", str(config)], "did you mean 'candidates'?"),
        # flags that do not go together
        ([str(model), "--server-cpus", "0", "--no-pin"], "cannot be combined with --no-pin"),
    ]
    for argv, message in cases:
        code, err = run_quiet(tmp_path, capsys, *argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("error: ") and message in err, (argv, err)
        assert no_run_left(tmp_path / "runs"), argv


def test_a_busy_readiness_address_is_refused_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with busy_port() as port:
        code, err = run_quiet(tmp_path, capsys, "--launch", exiting_command(0), "--ready-url",
                              f"http://127.0.0.1:{port}/ready", "--protocol", "v2-rest",
                              "--model", "mlp")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "already answers before the command started" in err
    assert no_run_left(tmp_path / "runs")


@pytest.mark.slow
def test_data_that_does_not_fit_the_model(served: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    narrow = tmp_path / "narrow.parquet"
    pq.write_table(pa.table({"features": [[0.5, 0.5]] * 10}), narrow)
    code, err = run_quiet(tmp_path, capsys, "--target", served.http_url, "--protocol",
                          "v2-rest", "--model", "mlp", "--data", str(narrow))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "column 'features' has rows of shape [2] but input 'features' wants [6]" in err
    assert no_run_left(tmp_path / "runs")

"""``caliper run`` against a server already running and a launched one; gates and exit codes."""

from __future__ import annotations

import shlex
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from modelcaliper.cli.main import main
from modelcaliper.store import Store
from tests.run.helpers import caliper_process, gone, only_folder, read_json
from tests.targets.helpers import free_port

pytestmark = pytest.mark.slow


def against(served: Any, runs: Path, *argv: str) -> int:
    return main(["run", "--target", served.http_url, "--protocol", "v2-rest", "--model", "mlp",
                 "--rps", "40", "--duration", "1s", "--warmup", "0", "--runs-dir", str(runs),
                 *argv])


def test_existing_server_run_is_stored_with_the_server_view(
        served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code = against(served, runs, "--encoding", "binary", "--batch-size", "4")
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = read_json(only_folder(runs) / "summary.json")
    assert summary["requests"]["ok"] == 40
    assert summary["target"]["kind"] == "existing"
    # the metrics URL was found by itself (/metrics on the REST port)
    server = summary["server_metrics"]
    assert server["available"] and server["url"] == f"{served.http_url}/metrics"
    (entry,) = server["histograms"]["request_latency_ms"]
    assert entry["count"] >= 40
    with Store(runs / "caliper.db") as store:
        (row,) = store.list_runs()
    assert (row.target_kind, row.encoding, row.batch_size) == ("existing", "v2-rest binary", 4)
    assert "server request ms" in out and "client latency ms" in out


GATES = [
    # every gate holds: exit 0, verdict pass
    (["p99<10s", "error_rate<1%", "throughput>=30rps"], 0, "pass", 0),
    # one gate fails: exit 1, verdict fail, the failure says actual vs expected
    (["p99<10s", "p99<1us"], 1, "fail", 1),
]


@pytest.mark.parametrize(("gates", "exit_code", "verdict", "failures"), GATES)
def test_assertions_decide_the_exit_code_and_the_junit_file(
        served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], gates: list[str],
        exit_code: int, verdict: str, failures: int) -> None:
    runs, junit = tmp_path / "runs", tmp_path / "junit.xml"
    argv = [arg for gate in gates for arg in ("--assert", gate)]
    code = against(served, runs, *argv, "--junit", str(junit))
    out, _ = capsys.readouterr()
    assert code == exit_code
    with Store(runs / "caliper.db") as store:
        (row,) = store.list_runs()
    assert row.verdict == verdict and row.status == "completed"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert [c.get("name") for c in suite.findall("testcase")] == gates
    assert suite.get("failures") == str(failures)
    failed = [c.find("failure") for c in suite.findall("testcase")
              if c.find("failure") is not None]
    if failures:
        message = failed[0].get("message")  # type: ignore[union-attr]
        assert message.startswith("p99 = ") and message.endswith("expected < 0.001 ms")
        assert "FAIL  p99<1us" in out


def test_launched_server_is_started_awaited_and_stopped(model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    http_port, grpc_port = free_port(), free_port()
    command = shlex.join([sys.executable, "-m", "modelcaliper.cli.main", "serve-model",
                         str(model), "--http-port", str(http_port), "--grpc-port",
                         str(grpc_port)])
    runs = tmp_path / "runs"
    code = main(["run", "--launch", command, "--ready-url",
                 f"http://127.0.0.1:{http_port}/v2/health/ready", "--protocol", "v2-rest",
                 "--model", "mlp", "--rps", "30", "--duration", "1s", "--warmup", "0",
                 "--runs-dir", str(runs), "--no-pin"])
    _, err = capsys.readouterr()
    assert code == 0, err
    folder = only_folder(runs)
    summary = read_json(folder / "summary.json")
    assert summary["target"]["kind"] == "launched"
    assert summary["target"]["url"] == f"http://127.0.0.1:{http_port}"
    assert summary["requests"]["ok"] == 30
    assert summary["server_metrics"]["available"]
    assert '"event":"stopped"' in (folder / "logs" / "server.log").read_text()
    assert gone(summary["target"]["pid"], 0)
    with Store(runs / "caliper.db") as store:
        (row,) = store.list_runs()
    assert row.target_kind == "launched" and row.status == "completed"


def test_two_workers_report_progress_and_merge(served: Any, tmp_path: Path) -> None:
    process = caliper_process("--target", served.grpc_url, "--protocol", "v2-grpc", "--model",
                              "mlp", "--rps", "60", "--duration", "2s", "--warmup", "0",
                              "--workers", "2", "--runs-dir", "runs", "--json", "-",
                              cwd=tmp_path)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    summary = read_json_text(out)
    assert summary["requests"]["ok"] == 120
    assert [w["worker"] for w in summary["generator"]["workers"]] == [0, 1]
    progress = [line for line in err.splitlines() if " sent " in f" {line}"]
    assert progress and "req/s" in progress[-1]


def read_json_text(text: str) -> dict[str, Any]:
    import orjson

    return orjson.loads(text)


def test_rows_are_selected_from_the_data_and_fanned_out_per_query(
        served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelcaliper.load.health import probe_target

    (spec,) = probe_target(served.http_url, "v2-rest", "mlp").inputs
    width = spec.shape[-1]
    rng = np.random.default_rng(0)
    n = 400  # 20 queries of 20 candidates, half of them from market "DE"
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({
        "query_id": np.repeat(np.arange(n // 20), 20),
        "market": np.repeat(np.where(np.arange(n // 20) % 2, "DE", "US"), 20),
        "x": [row.tolist() for row in rng.normal(size=(n, width)).astype(np.float32)],
    }), data)
    runs = tmp_path / "runs"
    code = against(served, runs, "--data", str(data), "--map", f"{spec.name}=x",
                   "--where", "market == 'DE'", "--group-by", "query_id", "--sample", "100",
                   "--candidates", "20", "--batch-size", "5", "--rps", "10")
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = read_json(only_folder(runs) / "summary.json")
    assert summary["queries"]["count"] == 10
    assert summary["requests"]["ok"] == 40  # 10 queries x 4 requests of 5 candidates
    assert "columns not used by the model: market" in err

"""``caliper run MODEL``: the embedded server, end to end — folder, database, gates, Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from modelcaliper.cli.main import main
from modelcaliper.runner import PHASES
from modelcaliper.store import Store, load_requests
from tests.run.helpers import caliper_process, gone, only_folder, read_json, wait_for_line

pytestmark = pytest.mark.slow


def test_embedded_run_writes_its_folder_and_database_row(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, junit = tmp_path / "runs", tmp_path / "gates.xml"
    code = main(["run", str(model), "--rps", "40", "--duration", "2s", "--warmup", "500ms",
                 "--runs-dir", str(runs), "--tag", "e2e", "--tag", "ci",
                 "--assert", "p99<5s", "--assert", "error_rate<1%", "--junit", str(junit)])
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = only_folder(runs)
    for name in ("summary.json", "spec.json", "environment.json", "status.json",
                 "intervals.json", "server_metrics.json", "requests.parquet",
                 "histograms/latency.hist", "histograms/latency.hlog", "logs/server.log"):
        assert (folder / name).is_file(), name
    assert read_json(folder / "status.json")["status"] == "completed"
    summary = read_json(folder / "summary.json")
    assert summary["run_id"] == folder.name
    assert summary["requests"]["ok"] == summary["requests"]["scheduled"] == 80
    assert summary["target"]["kind"] == "embedded" and summary["target"]["model"] == "mlp"
    assert summary["target"]["protocol"] == "v2-grpc"  # the embedded default
    # every phase was timed, in order
    assert list(summary["phases_wall_s"]) == list(PHASES)
    assert summary["phases_wall_s"]["load"] == pytest.approx(2.0, abs=0.5)
    # the server's own view, scraped before and after
    server = summary["server_metrics"]
    assert server["available"] and server["histograms"]["request_latency_ms"]
    assert read_json(folder / "server_metrics.json")["diff"]
    assert load_requests(folder).num_rows == 100  # warm-up records included, marked
    with Store(runs / "caliper.db") as store:
        (row,) = store.list_runs()
        stored = store.get_run(row.run_id)
    assert stored is not None
    assert (row.run_id, row.model, row.model_version, row.target_kind, row.status,
            row.verdict) == (folder.name, "mlp", "1", "embedded", "completed", "pass")
    assert list(stored.tags) == ["ci", "e2e"]
    assert [(a.expression, a.passed) for a in stored.assertions] == [
        ("p99<5s", True), ("error_rate<1%", True)]
    assert stored.summary["phases_wall_s"]["report"] >= 0
    # the server was stopped, and the report said where everything is
    assert gone(summary["target"]["pid"], 0)
    assert "server view" in out and "pass  p99<5s" in out and f"results     {folder}" in out
    assert "sent " in err  # the progress line (plain, stderr is not a terminal)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "0")


def test_ctrl_c_stores_partial_results_marked_interrupted(model: Path, tmp_path: Path) -> None:
    process = caliper_process(str(model), "--rps", "20", "--duration", "60s", "--warmup", "0",
                              "--runs-dir", "runs", "--json", "run.json", cwd=tmp_path)
    try:
        seen: list[str] = []
        pid = int(wait_for_line(process, "server pid ", seen=seen).split()[2])
        wait_for_line(process, "sending ", seen=seen)
        time.sleep(1.5)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - interrupted_at < 20
    assert process.returncode == 1, "".join(seen) + err
    folder = only_folder(tmp_path / "runs")
    status = read_json(folder / "status.json")
    assert status["status"] == "interrupted" and "Ctrl-C" in status["reason"]
    summary = read_json(folder / "summary.json")
    assert summary["interrupted"] and 0 < summary["requests"]["ok"] < 1200
    assert read_json(tmp_path / "run.json")["status"] == "interrupted"
    with Store(tmp_path / "runs" / "caliper.db") as store:
        (row,) = store.list_runs()
    assert row.status == "interrupted"
    assert gone(pid)  # the server was not left running


def test_a_server_crash_stops_the_run_and_is_stored_as_failed(model: Path,
                                                              tmp_path: Path) -> None:
    process = caliper_process(str(model), "--rps", "20", "--duration", "60s", "--warmup", "0",
                              "--runs-dir", "runs", cwd=tmp_path)
    try:
        seen: list[str] = []
        pid = int(wait_for_line(process, "server pid ", seen=seen).split()[2])
        wait_for_line(process, "sending ", seen=seen)
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert time.monotonic() - killed_at < 15  # stopped at once, not after 60 s
    assert process.returncode == 1, "".join(seen) + err
    folder = only_folder(tmp_path / "runs")
    status = read_json(folder / "status.json")
    assert status["status"] == "failed"
    assert "was killed by SIGKILL during the run" in status["reason"]
    assert "failed: the server process was killed by SIGKILL" in err
    with Store(tmp_path / "runs" / "caliper.db") as store:
        (row,) = store.list_runs()
    assert row.status == "failed" and row.reason == status["reason"]

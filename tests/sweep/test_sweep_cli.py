"""``caliper sweep`` end to end on a small model: stored runs, sweep.json, failures as data."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from modelcaliper.cli.main import build_parser, main
from modelcaliper.cli.sweep import build_settings
from modelcaliper.store import Store
from modelcaliper.sweep.runner import SweepObserver, run_sweep
from tests.sweep.helpers import sweep

QUICK = ("--protocol", "v2-rest", "--rps", "100", "--duration", "4s", "--warmup", "0.5s",
         "--min-requests", "100", "--min-duration", "1s", "--no-pin", "--quiet")


@pytest.mark.parametrize(("argv", "message"), [
    # no model and no server
    ([], "nothing to sweep: give a model path"),
    # an empty axis
    (["MODEL", "--batch-size", ","], "--batch-size is empty; give one value"),
    # an encoding of no swept protocol
    (["MODEL", "--protocol", "v2-grpc", "--encoding", "binary"],
     "--encoding binary applies to none of gRPC protocols"),
    # auto without an SLO to search against, or mixed with fixed rates
    (["MODEL", "--rps", "auto"], "--rps auto needs --slo (what 'sustainable' means)"),
    (["MODEL", "--rps", "auto,20", "--slo", "p99<1s"], "--rps auto searches for the highest"),
    # an SLO is an upper bound on a latency or an error rate
    (["MODEL", "--slo", "throughput>=5rps"], "the sweep measures throughput itself"),
    (["MODEL", "--slo", "p99>5ms"], "an SLO is an upper bound; write it with < or <="),
    (["MODEL", "--slo", "query_p99<1s"], "query_p99 needs fanned-out queries; add "
                                         "--candidates K"),
    # every combination contradicts the server's batch limit
    (["MODEL", "--batch-size", "50", "--max-batch-size", "16"], "the sweep has no point left: "
                                                                 "batch 50 with max batch 16"),
    # server axes and links need the embedded server
    (["--target", "http://127.0.0.1:9", "--protocol", "v2-rest", "--model", "m",
      "--max-batch-size", "8"], "--max-batch-size sweeps the embedded server's settings"),
    (["--target", "http://127.0.0.1:9", "--protocol", "v2-rest", "--model", "m",
      "--link", "100mbit"], "--link puts the embedded server behind a rate-limited link"),
    (["--target", "http://127.0.0.1:9", "--protocol", "v2-rest,v2-grpc", "--model", "m"],
     "sweep either REST or gRPC protocols against it, not both"),
    # run options that do not apply to a sweep
    (["MODEL", "--assert", "p99<1s"], "--assert does not apply to caliper sweep; use --slo"),
    (["MODEL", "--launch", "true"], "--launch does not apply to caliper sweep; start your "
                                    "server and use --target"),
    (["MODEL", "--no-store"], "--no-store does not apply to caliper sweep"),
    # a bad run option is caught for every point before anything starts
    (["MODEL", "--timeout", "soon"], "--timeout must look like 250ms, 2s or 1m"),
    (["MODEL", "--precision", "high"], "--precision must be a fraction like 0.1"),
])
def test_bad_input_is_one_line_exit_2_before_anything_starts(
        argv: list[str], message: str, model: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(model) if a == "MODEL" else a for a in argv]
    code = main(["sweep", *argv, "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: UsageError: ") and message in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_link_without_privileges_says_so(model: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = main(["sweep", str(model), "--link", "100mbit", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: UsageError: --link needs root: it creates a network "
                          "namespace, a veth pair and tc token-bucket limits")


def test_dry_run_lists_the_points_in_run_order(model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", str(model), "--batch-size", "1,8", "--protocol", "v2-rest,v2-grpc",
                 "--compression", "none,zstd", "--dry-run", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    points = [line for line in out if not line.startswith("note:")]
    assert len(points) == 6  # 2 batch sizes × (v2-rest, v2-rest zstd, v2-grpc)
    assert points[0].startswith("  1  batch ")
    assert out[-1] == "note: v2-grpc zstd left out: gRPC takes none, gzip or deflate"
    assert not (tmp_path / "sweeps").exists()


def test_every_point_is_a_stored_run_of_the_sweep(model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _, document = sweep(tmp_path, capsys, str(model), *QUICK,
                                   "--batch-size", "1,8", "--slo", "p90<1s", "--tag", "mine")
    assert code == 0, out
    assert document is not None and document["status"] == "completed"
    assert document["schema"] == "modelcaliper.sweep/1"
    points = document["points"]
    assert [p["config"]["batch_size"] for p in points] in ([1, 8], [8, 1])
    assert document["timing"]["server_starts"] == 1 and len(document["servers"]) == 1
    with Store(tmp_path / "runs" / "caliper.db") as store:
        stored = store.list_runs(tag=document["sweep_id"])
        assert {r.run_id for r in stored} == {p["run_id"] for p in points}
        assert all({"sweep", "mine", document["sweep_id"]} <= set(r.tags) for r in stored)
        assert all(r.status == "completed" and r.verdict == "pass" for r in stored)
    for point in points:
        assert point["status"] == "completed" and point["passed"] is True
        early = point["early_stop"]
        # p90 under a second is beyond doubt after the minimum count: far short of 4 s
        assert early["stopped_early"] and early["rule"] in ("decided", "precise")
        assert early["measured_s"] < 3.0 and early["saved_s"] > 1.0
        figures = point["figures"]
        assert figures["requests"] >= 100
        assert figures["client_cpu_us_per_request"] > 0
        assert figures["encode_us_per_request"] > 0
        assert figures["server_cpu_us_per_request"] > 0
        assert figures["client_cpu_us_per_candidate"] == pytest.approx(
            figures["client_cpu_us_per_request"] / point["config"]["batch_size"], rel=0.01)
        summary = Path(point["folder"]) / "summary.json"
        assert summary.is_file() and b'"stopped_early": true' in summary.read_bytes()
    assert document["recommendation"]["met"] is True
    assert "recommendation: batch " in out
    assert f"results: {tmp_path / 'runs' / 'sweeps'}" in out


def test_no_point_can_meet_the_slo(model: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _, document = sweep(tmp_path, capsys, str(model), *QUICK,
                                   "--batch-size", "1,4", "--slo", "p90<1us")
    assert code == 1
    assert document is not None
    record = document["recommendation"]
    assert record["met"] is False and record["closest"] is not None
    assert record["headline"].startswith("no configuration meets p90<1us; closest: batch ")
    assert "(p90 = " in record["headline"] and "expected < 0.001 ms)" in record["headline"]
    assert f"recommendation: {record['headline']}" in out
    # a verdict beyond doubt (here: failing) stops a point as early as a passing one
    for point in document["points"]:
        assert point["early_stop"]["stopped_early"] and point["early_stop"]["measured_s"] < 3.0


class _KillAtFirstPoint(SweepObserver):
    """Kills the server with SIGKILL a moment into the first point's load."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.servers: list[bool] = []

    def server_started(self, config: Any, endpoint: Any, restart: bool) -> None:
        self.servers.append(restart)

    def point_started(self, point: Any, rate: float, step: Any, server: Any) -> None:
        if not self.killed:
            self.killed.append(server.pid)
            threading.Timer(1.0, os.kill, (server.pid, signal.SIGKILL)).start()


def test_a_server_that_dies_fails_its_point_and_the_sweep_goes_on(
        model: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "sweep", str(model), *QUICK, "--duration", "3s", "--batch-size", "1,2,4",
        "--slo", "p90<1s", "--runs-dir", str(tmp_path / "runs"), "--no-early-stop"])
    observer = _KillAtFirstPoint()
    outcome = run_sweep(build_settings(args), observer)
    first, *rest = outcome.results
    assert first.status == "failed"
    assert first.reason is not None and "was killed by SIGKILL" in first.reason
    # stopped as soon as the death was seen, not at the end of its 3 s; not an early stop
    assert first.early["rule"] == "aborted" and not first.early["stopped_early"]
    assert first.early["measured_s"] < 2.5 and first.early["saved_s"] == 0.0
    assert [r.status for r in rest] == ["completed", "completed"]
    assert observer.servers == [False, True]
    assert outcome.document["servers"][1]["restart"] is True
    assert outcome.exit_code == 0
    with Store(tmp_path / "runs" / "caliper.db") as store:
        stored = {r.run_id: r.status for r in store.list_runs(tag=outcome.document["sweep_id"])}
    assert stored[first.run_id] == "failed"


def test_a_server_that_cannot_start_fails_its_configuration_only(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # allowed batch sizes must end at the max batch size: 8 works, 4 cannot start
    code, out, _, document = sweep(tmp_path, capsys, str(model), *QUICK, "--batch-size", "2",
                                   "--max-batch-size", "4,8", "--server-args",
                                   "--allowed-batch-sizes 8", "--slo", "p90<1s")
    assert document is not None
    by_limit = {p["config"]["server"]["max_batch_size"]: p for p in document["points"]}
    assert by_limit[4]["status"] == "failed" and by_limit[4]["run_id"] is None
    assert "must equal max_batch_size" in by_limit[4]["reason"]
    assert by_limit[8]["status"] == "completed" and by_limit[8]["passed"] is True
    assert code == 0
    record = document["recommendation"]
    assert record["best"]["label"] == "max batch 8"
    assert record["headline"].startswith("max batch 8: p90 ")
    assert "; max batch 4 failed to run at 100 req/s (the embedded server exited with code 2 " \
           "before it was ready" in record["headline"]
    assert f"recommendation: {record['headline']}" in out


def test_a_server_someone_else_runs(model: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from modelcaliper.targets import EmbeddedServer
    from modelcaliper.targets.affinity import CpuPlan

    with EmbeddedServer(model, protocol="v2-rest", cpus=CpuPlan()) as endpoint:
        code, out, _, document = sweep(
            tmp_path, capsys, "--target", endpoint.http_url, "--model", endpoint.model,
            *QUICK, "--encoding", "json,binary", "--batch-size", "4", "--slo", "p90<1s")
        assert endpoint.pid is not None
    assert code == 0, out
    assert document is not None and document["target"] == {"kind": "existing",
                                                           "url": endpoint.http_url}
    assert document["servers"] == []  # nothing started, nothing stopped
    assert sorted(p["config"]["encoding"] for p in document["points"]) == ["binary", "json"]
    for point in document["points"]:
        assert point["status"] == "completed"
        figures = point["figures"]
        assert figures["client_cpu_us_per_request"] > 0
        assert figures["server_cpu_us_per_request"] is None  # not our process to read

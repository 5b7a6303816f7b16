"""``caliper demo``: the comparison, the cached artifacts, and the whole quick demo end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.main import main
from modelcaliper.demo.data import FeatureLayout
from modelcaliper.demo.model import TrainConfig
from modelcaliper.demo.story import DemoSettings, compare, prepare_artifacts, render_comparison

ROOT = Path(__file__).resolve().parents[2]


def summary(query_p50: float | None, misses: int | None, transform: float | None,
            compute: float | None) -> dict[str, Any]:
    """A run summary holding only what the comparison reads."""
    phases = {}
    if transform is not None:
        phases["transform"] = {"mean": transform}
    if compute is not None:
        phases["compute"] = {"mean": compute}
    return {
        "queries": {"count": 10, "deadline_misses": misses,
                    "latency_ms": {"p50": query_p50, "p99": None}},
        "latency_ms": {"p50": 5.0, "p99": 9.0},
        "phases_ms": phases,
        "throughput": {"ok_rps": 40.0},
    }


def row(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    return next(r for r in rows if r["metric"] == metric)


COMPARE_CASES = [
    # v2 four times faster at the median query
    ("query p50", summary(200.0, 3, 4.0, 5.0), summary(50.0, 0, 1.0, 2.0), 200.0, 50.0, 4.0),
    # misses as a percentage of queries; no ratio when v2 has none
    ("deadline misses", summary(200.0, 3, 4.0, 5.0), summary(50.0, 0, 1.0, 2.0), 30.0, 0.0,
     None),
    # the transform's share of the server's compute
    ("transform share", summary(200.0, 3, 4.0, 5.0), summary(50.0, 0, 1.0, 2.0), 80.0, 50.0,
     1.6),
    # a statistic with no samples stays None, never 0
    ("query p99", summary(200.0, 3, 4.0, 5.0), summary(50.0, 0, 1.0, 2.0), None, None, None),
    # a server that reported no split has no transform share
    ("transform share", summary(200.0, 3, None, 5.0), summary(50.0, 0, None, 2.0), None, None,
     None),
]


@pytest.mark.parametrize(("metric", "before", "after", "v1", "v2", "ratio"), COMPARE_CASES)
def test_compare_reads_each_metric(metric: str, before: dict[str, Any], after: dict[str, Any],
                                   v1: float | None, v2: float | None,
                                   ratio: float | None) -> None:
    found = row(compare(before, after), metric)
    assert found["v1"] == (None if v1 is None else pytest.approx(v1))
    assert found["v2"] == (None if v2 is None else pytest.approx(v2))
    assert found["ratio"] == (None if ratio is None else pytest.approx(ratio))


def test_rendered_comparison_names_the_deadline_and_speed_ups() -> None:
    rows = compare(summary(200.0, 3, 4.0, 5.0), summary(50.0, 0, 1.0, 2.0))
    text = render_comparison(rows, 250.0)
    assert "deadline 250 ms" in text.splitlines()[0]
    assert "query p50" in text and "200 ms → 50.0 ms" in text and "4.0× faster" in text
    assert "30.0% → 0.0%" in text
    assert "query p99" in text and "- → -" in text


BAD_FLAGS = [
    # a negative rate
    (["--rps", "-1"], "--rps must be a finite number > 0"),
    # not a number
    (["--rps", "fast"], "--rps must be a number of queries per second"),
    # an unknown flag, caught by the parser
    (["--qps", "2"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS)
def test_bad_flags_exit_2_with_one_line(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("error: UsageError")
    assert not any(tmp_path.iterdir())  # nothing built before the flags were checked


@pytest.mark.slow
def test_artifacts_are_built_once_then_reused(tmp_path: Path) -> None:
    settings = DemoSettings(
        profile="tiny", queries=3, candidates=200,
        layout=FeatureLayout(numeric=10, categorical=3, context=2, discretized=1),
        train=TrainConfig(hidden=(8,), epochs=1))
    said: list[str] = []
    first = prepare_artifacts(tmp_path, settings, say=said.append)
    assert not first.data_cached and not first.model.cached
    assert any("training and exporting" in line for line in said)
    data_written_ns = first.data_path.stat().st_mtime_ns
    said.clear()
    second = prepare_artifacts(tmp_path, settings, say=said.append)
    assert second.data_cached and second.model.cached
    assert second.data_path.stat().st_mtime_ns == data_written_ns
    assert not any("training and exporting" in line for line in said)
    assert second.rows == 600 and second.model.auc == first.model.auc
    third = prepare_artifacts(tmp_path, settings, rebuild=True, say=said.append)
    assert not third.data_cached and not third.model.cached


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _server_pids(run_dir: Path) -> list[int]:
    """Process ids of the servers a run folder's server log says were ready."""
    pids = []
    for log in (run_dir / "logs").glob("*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "ready":
                pids.append(int(json.loads(line)["pid"]))
    return pids


def demo_command(out: Path, runs: Path) -> list[str]:
    return [sys.executable, "-m", "modelcaliper.cli.main", "demo", "--quick", "--out", str(out),
            "--runs-dir", str(runs)]


ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """``caliper demo --quick`` run once from scratch: its out dir, runs dir and process."""
    base = tmp_path_factory.mktemp("quick")
    out, runs = base / "demo", base / "runs"
    started_s = time.monotonic()
    done = subprocess.run(demo_command(out, runs), cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env=ENV)
    print(f"caliper demo --quick took {time.monotonic() - started_s:.0f} s")
    return out, runs, done


@pytest.mark.slow
def test_quick_demo_prints_both_summaries_and_what_changed(
        quick_demo: tuple[Path, Path, Any]) -> None:
    _, _, done = quick_demo
    assert done.returncode == 0, done.stderr[-3000:]
    stdout = done.stdout
    for needle in ("== v1, unvectorized transform", "== v2, vectorized transform",
                   "what changed, v1 → v2", "deadline misses", "transform share",
                   "where to look", "caliper.db"):
        assert needle in stdout, needle
    assert stdout.count("queries     ") == 2  # both summaries show the fanned-out queries
    assert "oneDNN" not in done.stderr  # TensorFlow's start-up chatter went to the build log


@pytest.mark.slow
def test_quick_demo_stores_both_runs(quick_demo: tuple[Path, Path, Any]) -> None:
    from modelcaliper.store import Store, load_status

    out, runs, done = quick_demo
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "latest.json").read_text())
    assert report["schema"] == "modelcaliper.demo/1"
    assert not report["interrupted"] and report["failed"] == []
    assert {r["metric"] for r in report["what_changed"]} >= {"query p50", "deadline misses"}
    for version in ("v1", "v2"):
        run_dir = Path(report["runs"][version]["dir"])
        assert run_dir.parent == runs
        run = json.loads((run_dir / "summary.json").read_text())
        assert run["schema"] == "modelcaliper.run/1"
        assert run["run_id"] == run_dir.name == report["runs"][version]["run_id"]
        assert run["load"]["candidates"] == 1000 and run["load"]["batch_size"] == 25
        assert run["load"]["arrival"] == "bursty" and run["queries"]["deadline_ms"] == 250
        assert run["requests"]["ok"] > 0 and run["phases_ms"]["transform"]["count"] > 0
        requests = pq.read_table(run_dir / "requests.parquet")
        assert requests.num_rows == run["requests"]["scheduled"] + run["requests"]["warmup"]
        assert pq.read_table(run_dir / "queries.parquet").num_rows > 0
        assert (run_dir / "histograms" / "latency.hlog").stat().st_size > 0
        assert load_status(run_dir)["status"] == "completed"
        pids = _server_pids(run_dir)
        assert len(pids) == 1 and not _alive(pids[0])  # the server was stopped
    with Store(runs / "caliper.db") as store:
        stored = store.list_runs(tag="demo")
    assert sorted((r.model, r.model_version) for r in stored) == [("ranker", "1"),
                                                                   ("ranker", "2")]
    artifacts = out / "artifacts" / "quick"
    for path in ("ranker/1/saved_model.pb", "ranker/2/saved_model.pb", "train.parquet",
                 "ranker.build.log"):
        assert (artifacts / path).is_file(), path


@pytest.mark.slow
def test_quick_demo_profiles_both_versions_and_writes_the_html_report(
        quick_demo: tuple[Path, Path, Any]) -> None:
    out, _, done = quick_demo
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "latest.json").read_text())
    shares = {}
    for version in ("v1", "v2"):
        run_dir = Path(report["runs"][version]["dir"])
        profile = json.loads((run_dir / "profile" / "profile.json").read_text())
        assert profile["status"] == "ok" and profile["runtime"] == "tensorflow"
        groups = {g["group"]: g["share"] for g in profile["summary"]["groups"]}
        shares[version] = groups.get("transform", 0.0)
        assert (run_dir / "profile" / "trace.json").stat().st_size > 0
    # v1's row-by-row transform is what the op profile must point at; v2 vectorized it
    assert shares["v1"] > 0.5 and shares["v1"] > shares["v2"]
    assert "op profile" in done.stdout and "transform ops (profile)" in done.stdout
    html = Path(report["report_html"])
    assert html == out / "report.html" and str(html) in done.stdout
    page = html.read_text()
    for version in ("v1", "v2"):
        assert report["runs"][version]["run_id"] in page
    assert "Op profile" in page and "group-transform" in page
    assert "<script src=" not in page  # self-contained: scripts are inlined


@pytest.mark.slow
def test_ctrl_c_stores_the_partial_run_and_stops_the_server(
        quick_demo: tuple[Path, Path, Any], tmp_path: Path) -> None:
    from modelcaliper.store import Store, load_status

    out, _, first = quick_demo
    assert first.returncode == 0, first.stderr[-3000:]
    runs = tmp_path / "runs"
    process = subprocess.Popen(demo_command(out, runs), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    lines: list[str] = []
    running = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "Ctrl-C stops early" in line:  # the run's note as its load starts
                running.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert running.wait(timeout=90), "".join(lines)
        time.sleep(2.0)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)  # stdout (a few kB) fits in the pipe meanwhile
        assert process.stdout is not None
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=5)
    stderr = "".join(lines)
    assert process.returncode == 130, stderr[-3000:] + stdout[-3000:]
    assert "== v1" in stdout and "== v2" not in stdout
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1
    assert load_status(folders[0])["status"] == "interrupted"
    assert json.loads((folders[0] / "summary.json").read_text())["interrupted"] is True
    pids = _server_pids(folders[0])
    assert len(pids) == 1 and not _alive(pids[0])
    with Store(runs / "caliper.db") as store:
        assert [r.status for r in store.list_runs(tag="demo")] == ["interrupted"]

"""Run folders: ids, every artifact written and read back, statuses, atomic writes."""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from modelcaliper.errors import DataError, UsageError
from modelcaliper.stats.histogram import Histogram
from modelcaliper.stats.hlog import read_hlog
from modelcaliper.store import _files
from modelcaliper.store.environment import collect_environment
from modelcaliper.store.runfolder import (
    RunFolder,
    atomic_write,
    check_run_id,
    list_run_folders,
    load_environment,
    load_histograms,
    load_intervals,
    load_queries,
    load_requests,
    load_server_metrics,
    load_spec,
    load_status,
    load_summary,
    metrics_diff,
    new_run_id,
)
from tests.store.runs import SPEC, driven_run

WHEN = datetime(2026, 11, 27, 4, 15, 0, tzinfo=UTC)


# --- run ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, when, prefix", [
    ("ranker", WHEN, "20261127-041500-ranker-"),  # the plain case
    ("Ranker V2", WHEN, "20261127-041500-ranker-v2-"),  # lower case, spaces become '-'
    ("models/ranker/../x", WHEN, "20261127-041500-models-ranker-..-x-"),  # no separators left
    ("", WHEN, "20261127-041500-model-"),  # an empty name still gives a readable id
    ("ünïcode✓", WHEN, "20261127-041500-n-code-"),  # non-ASCII dropped
    ("x" * 100, WHEN, "20261127-041500-" + "x" * 40 + "-"),  # long names cut at 40
    ("r", datetime(2026, 11, 27, 5, 15, tzinfo=timezone(timedelta(hours=1))),
     "20261127-041500-r-"),  # another time zone: the id is in UTC
    ("r", datetime(2026, 11, 27, 4, 15), "20261127-041500-r-"),  # naive times are UTC
])
def test_run_id_is_time_model_and_random_hex(model, when, prefix):
    run_id = new_run_id(model, when)
    assert run_id.startswith(prefix)
    assert re.fullmatch(r"[0-9a-f]{6}", run_id[len(prefix):])
    assert check_run_id(run_id) == run_id


def test_run_ids_sort_by_time_and_do_not_repeat():
    ids = [new_run_id("m", WHEN + timedelta(seconds=s)) for s in (0, 1, 59, 3600, 86400)]
    assert ids == sorted(ids)
    assert len({new_run_id("m", WHEN) for _ in range(500)}) == 500


@pytest.mark.parametrize("run_id", [
    "",  # empty
    "../etc",  # climbs out of the root
    "a/b",  # a separator
    ".hidden",  # starts with a dot
    "..",  # the parent
    "a\x00b",  # a NUL
    "x" * 161,  # too long
])
def test_unsafe_run_ids_are_refused(run_id, tmp_path):
    with pytest.raises(UsageError, match="run id"):
        check_run_id(run_id)
    with pytest.raises(UsageError, match="run id"):
        RunFolder(tmp_path, run_id)
    assert list(tmp_path.iterdir()) == []


def test_a_run_id_must_be_text():
    with pytest.raises(UsageError, match="run id None"):
        check_run_id(None)  # type: ignore[arg-type]


def test_a_new_folder_is_created_and_marked_running(tmp_path):
    folder = RunFolder(tmp_path / "runs", model="ranker")
    assert folder.path.is_dir() and folder.path.parent == tmp_path / "runs"
    assert folder.path.name == folder.run_id
    assert load_status(folder)["status"] == "running"
    assert list_run_folders(tmp_path / "runs") == [folder.path]


# --- the round trip of a real run ---------------------------------------------------------------


def test_round_trip_of_a_real_run(tmp_path):
    parts = tmp_path / "runs" / "parts"
    first, second = driven_run(parts / "w0", seed=1), driven_run(parts / "w1", seed=2)
    groups = sum(pq.ParquetFile(r).num_row_groups for r in (first.records, second.records))
    folder = RunFolder(tmp_path / "runs", model="ranker")
    spec = {"load": first.spec.describe(), "target": {"kind": "existing"},
            "seeds": {"seed": 7, "data_seed": 3}}
    environment = collect_environment(seeds={"seed": 7, "data_seed": 3})
    before = {"requests_total{code=\"200\"}": 10, "queue_seconds_sum": 1.5, "build": "x"}
    after = {"requests_total{code=\"200\"}": 70, "queue_seconds_sum": 2.0, "build": "x",
             "requests_total{code=\"503\"}": 4}

    folder.write_summary(first.summary)
    folder.write_spec(spec)
    folder.write_environment(environment)
    folder.write_stats(first.result.stats, first.result.started_at_s)
    folder.write_server_metrics(before, after)
    folder.adopt_records([first.records, second.records], [first.queries, second.queries])
    folder.write_log("server.log", "line 1\nline 2\n")
    folder.finish("completed")

    # the summary gets the folder's id; everything else comes back as written
    assert load_summary(folder) == {**first.summary, "run_id": folder.run_id}
    assert load_spec(folder) == spec
    assert load_environment(folder) == environment
    assert load_status(folder)["status"] == "completed"
    # every series with samples is stored, bit for bit; empty ones are not
    stored = load_histograms(folder.path)
    expected = {n: h for n, h in first.result.stats.histograms.items() if h.count}
    assert set(stored) == set(expected) and {"latency", "query_latency", "wait"} <= set(stored)
    for name, histogram in expected.items():
        assert stored[name] == histogram, name
    # per-second series: counts add up to the measured requests that ended
    intervals = load_intervals(folder)
    assert intervals["interval_s"] == 1.0
    rows = intervals["rows"]
    assert sum(r["count"] for r in rows) == first.result.stats.histograms["latency"].count
    assert set(rows[0]) == {"start_s", "count", "ok", "errors", "timeouts", "p50_ms", "p90_ms",
                            "p99_ms", "p999_ms", "lag_p99_ms", "lag_max_ms"}
    assert rows[0]["p50_ms"] <= rows[0]["p99_ms"] <= rows[0]["p999_ms"]
    lags = [r for r in rows if r["lag_max_ms"] is not None]  # both workers' sends, merged
    assert lags and all(0 <= r["lag_p99_ms"] <= r["lag_max_ms"] for r in lags)
    assert max(r["lag_max_ms"] for r in lags) == pytest.approx(
        first.result.stats.histograms["schedule_lag"].max / 1e3, rel=1e-3)
    hlog = read_hlog(folder.path / "histograms" / "latency.hlog")
    assert sum(i.histogram.count for i in hlog.intervals) == sum(r["count"] for r in rows)
    # both workers' parts are in one file, their row groups kept; the parts are gone
    requests = load_requests(folder)
    assert requests.num_rows == _rows(first) + _rows(second)
    assert pq.ParquetFile(folder.path / "requests.parquet").num_row_groups == groups
    assert sorted(set(requests.column("index").to_pylist())) == list(range(_rows(first)))
    assert load_queries(folder).num_rows == 2 * (first.summary["queries"]["count"]
                                                 + first.spec.plan().warmup_units)
    assert load_requests(folder, columns=["status"]).column_names == ["status"]
    assert not first.records.exists() and not second.records.exists()
    # server metrics: numbers differ, text is skipped, a series new in "after" counts from 0
    metrics = load_server_metrics(folder)
    assert metrics["before"] == before and metrics["after"] == after
    assert metrics["diff"] == {"requests_total{code=\"200\"}": 60, "queue_seconds_sum": 0.5,
                               "requests_total{code=\"503\"}": 4}
    assert (folder.path / "logs" / "server.log").read_text() == "line 1\nline 2\n"
    # nothing temporary is left behind
    assert not [p for p in folder.path.rglob(".*") if p.name != ".parts"]


def _rows(run) -> int:
    requests = run.summary["requests"]
    return requests["scheduled"] + requests["warmup"]


def test_one_records_part_is_moved_not_copied(tmp_path):
    run = driven_run(tmp_path / "parts", seed=3)
    folder = RunFolder(tmp_path / "runs", model="ranker")
    inode = os.stat(run.records).st_ino
    folder.adopt_records([run.records])
    assert os.stat(folder.path / "requests.parquet").st_ino == inode
    assert load_queries(folder) is None  # no query parts given


def test_a_run_interrupted_or_failed_is_marked_with_its_reason(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    folder.finish("interrupted", "Ctrl-C after 12.3 s")
    assert load_status(folder)["status"] == "interrupted"
    assert load_status(folder)["reason"] == "Ctrl-C after 12.3 s"
    folder.finish("failed", "the target exited with code 1")
    assert load_status(folder.path)["reason"] == "the target exited with code 1"
    with pytest.raises(UsageError, match="run status"):
        folder.finish("exploded")
    assert load_status(folder)["status"] == "failed"


def test_reopening_a_folder_keeps_its_status(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    folder.finish("completed")
    again = RunFolder.open(folder.path)
    assert again.run_id == folder.run_id
    assert load_status(again)["status"] == "completed"
    assert RunFolder(tmp_path, folder.run_id).path == folder.path  # same id: same folder
    assert load_status(folder)["status"] == "completed"
    with pytest.raises(DataError, match="does not exist"):
        RunFolder.open(tmp_path / "nope")


@pytest.mark.parametrize("reader, expected", [
    (load_spec, None),  # optional documents are None when absent
    (load_environment, None),
    (load_intervals, None),
    (load_server_metrics, None),
    (load_requests, None),
    (load_queries, None),
    (load_histograms, {}),  # no histograms: an empty mapping
])
def test_missing_optional_files_read_as_nothing(reader, expected, tmp_path):
    folder = RunFolder(tmp_path, model="m")
    assert reader(folder) == expected


def test_missing_or_broken_summary_is_a_data_error(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    with pytest.raises(DataError, match="has no summary.json"):
        load_summary(folder)
    (folder.path / "summary.json").write_text('{"run_id": ')
    with pytest.raises(DataError, match="summary.json is not valid JSON"):
        load_summary(folder)


def test_spec_objects_and_numpy_values_are_stored_as_json(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    folder.write_spec(SPEC)  # a LoadSpec: stored through describe()
    assert load_spec(folder)["seed"] == 7 and load_spec(folder)["data_seed"] == 3
    folder.write_spec({"n": np.int64(3), "x": np.float32(0.5), "path": Path("a/b"),
                       "tags": {"b", "a"}, "pair": (1, 2)})
    assert load_spec(folder) == {"n": 3, "x": 0.5, "path": "a/b", "tags": ["a", "b"],
                                 "pair": [1, 2]}
    with pytest.raises(TypeError, match="not JSON serializable"):
        folder.write_spec({"bad": object()})
    assert load_spec(folder)["n"] == 3  # the failed write left the previous file


def test_histogram_series_names_must_be_file_names(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    hist = Histogram()
    hist.record(5)
    with pytest.raises(UsageError, match="histogram series"):
        folder.write_histograms({"../latency": hist})
    assert folder.write_histograms({"latency": hist, "empty": Histogram()}) == ["latency"]


@pytest.mark.parametrize("before, after, diff", [
    ({"a": 1}, {"a": 3}, {"a": 2}),  # a counter grew
    ({}, {"a": 3}, {"a": 3}),  # first seen during the run: counts from 0
    ({"a": 1, "gone": 5}, {"a": 1}, {"a": 0}),  # a series that disappeared is not in the diff
    ({"a": "x"}, {"a": "y"}, {}),  # text is not diffed
    ({"a": True}, {"a": False}, {}),  # nor are booleans
    ({"h": {"le_1": 2, "le_2": 3}}, {"h": {"le_1": 5, "le_2": 3}},
     {"h": {"le_1": 3, "le_2": 0}}),  # nested mappings alike
    (None, {"a": 1.5}, {"a": 1.5}),  # no "before" scrape at all
])
def test_metrics_diff(before, after, diff):
    assert metrics_diff(before, after) == diff


def test_server_metrics_without_a_scrape_have_no_diff(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    folder.write_server_metrics(None, {"a": 1})
    assert load_server_metrics(folder) == {"before": None, "after": {"a": 1}, "diff": None}
    folder.write_server_metrics({"a": 1}, {"a": 2}, diff={"computed": "elsewhere"})
    assert load_server_metrics(folder)["diff"] == {"computed": "elsewhere"}


def test_logs_are_copied_under_a_safe_name(tmp_path):
    folder = RunFolder(tmp_path / "runs", model="m")
    source = tmp_path / "server-out.log"
    source.write_bytes(b"ready\n\xff binary tail")
    assert folder.copy_log(source).read_bytes() == source.read_bytes()
    assert folder.copy_log(source, "server.log").name == "server.log"
    with pytest.raises(UsageError, match="log name"):
        folder.write_log("../escape.log", "x")
    assert folder.profile_dir == folder.path / "profile" and folder.profile_dir.is_dir()


# --- atomic writes ------------------------------------------------------------------------------


def test_a_reader_never_sees_a_partial_file(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    # Two documents of very different sizes, rewritten in turn while another thread reads.
    small = {"run_id": folder.run_id, "n": 1}
    large = {"run_id": folder.run_id, "rows": [{"i": i, "pad": "x" * 64} for i in range(4000)]}
    folder.write_summary(small)
    stop = threading.Event()
    seen: list[int] = []
    failures: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                document = load_summary(folder)
            except Exception as exc:  # a partial file shows up here as invalid JSON
                failures.append(exc)
                return
            assert document in (small, large)
            seen.append(len(document))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            folder.write_summary(large if i % 2 else small)
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert len(seen) > 10  # the reader really ran alongside the writes
    assert sorted(p.name for p in folder.path.iterdir()) == ["status.json", "summary.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write(target, b'{"old": true}')

    def refuse(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b'{"new": true}')
    assert orjson.loads(target.read_bytes()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_crash_mid_write_leaves_only_a_hidden_temporary(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    folder.write_summary({"run_id": folder.run_id, "ok": True})
    hist = Histogram()
    hist.record(10)
    folder.write_histograms({"latency": hist})
    # What a process killed between writing and renaming leaves behind:
    (folder.path / ".summary.json.abc123.tmp").write_text('{"run_id": "half')
    (folder.path / "histograms" / ".wait.hist.abc123.tmp").write_bytes(b"MCHG")
    assert load_summary(folder)["ok"] is True
    assert set(load_histograms(folder)) == {"latency"}
    assert list_run_folders(tmp_path) == [folder.path]


def test_written_files_are_readable_by_others(tmp_path):
    folder = RunFolder(tmp_path, model="m")
    path = folder.write_summary({"run_id": folder.run_id})
    assert path.stat().st_mode & 0o777 == 0o644


def test_list_run_folders_skips_what_is_not_a_run(tmp_path):
    run = RunFolder(tmp_path, model="m")
    (tmp_path / "caliper.db").write_bytes(b"")
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "status.json").write_text("{}")
    assert list_run_folders(tmp_path) == [run.path]
    assert list_run_folders(tmp_path / "missing") == []

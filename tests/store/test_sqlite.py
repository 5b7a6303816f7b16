"""The run database: save, get, list (filters, sorting, pages), tags, assertions, sharing."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest

from modelcaliper.errors import DataError, UsageError
from modelcaliper.store import RunFolder, Store, load_summary
from modelcaliper.store.schema import AssertionResult, error_rate_of
from tests.store.runs import RUNS, ids, summary_like

# --- saving and getting -------------------------------------------------------------------------


def test_a_saved_summary_comes_back_whole(tmp_path, real_summary):
    with Store(tmp_path / "caliper.db") as store:
        summary = summary_like(real_summary, "abc", version="3")
        spec = {"seed": 7, "data_seed": 3, "target": {"kind": "embedded"}}
        store.save_run(summary, spec=spec, environment={"host": {"cpu_count": 2}})
        run = store.get_run("abc")
    assert run.summary == summary and run.spec == spec
    assert run.environment == {"host": {"cpu_count": 2}}
    # the indexed figures, each from its place in the summary
    assert (run.model, run.model_version, run.protocol) == ("ranker", "3", "v2-rest")
    assert run.target_url == "http://127.0.0.1:8501" and run.target_kind == "embedded"
    assert (run.encoding, run.compression) == (None, None)  # the run had no pool
    assert (run.rate_per_s, run.batch_size, run.candidates) == (40.0, 4, 10)
    assert (run.arrival, run.duration_s) == ("constant", 0.5)
    assert run.p50_ms == summary["latency_ms"]["p50"] and run.p99_ms == 10.0
    assert run.query_p99_ms == summary["queries"]["latency_ms"]["p99"]
    queries = summary["queries"]
    assert run.deadline_miss_rate == queries["deadline_misses"] / queries["count"]
    assert run.error_rate == summary["requests"]["errors"] / summary["requests"]["scheduled"]
    assert run.achieved_rps == summary["throughput"]["achieved_rps"]
    assert (run.status, run.verdict, run.folder) == ("completed", None, None)
    assert run.created_at == "2026-11-27T04:15:00.000Z"


def test_an_unknown_run_is_none(store):
    assert store.get_run("nope") is None
    assert store.get_run("' OR '1'='1") is None


@pytest.mark.parametrize("requests, rate", [
    ({"scheduled": 100, "ok": 100}, 0.0),  # all fine
    ({"scheduled": 100, "errors": 3, "timeouts": 2, "model_errors": 1, "dropped": 4},
     0.1),  # every kind of failure counts
    ({"scheduled": 100, "ok": 50, "cancelled": 50}, 0.0),  # cancelled on purpose: left out
    ({"scheduled": 10, "errors": 5, "cancelled": 5}, 1.0),  # out of the 5 still due
    ({"scheduled": 0}, None),  # nothing was due: no rate, not 0
])
def test_error_rate(requests, rate):
    assert error_rate_of({"requests": requests}) == rate


def test_saving_a_folder_reads_its_files_and_keeps_a_relative_path(tmp_path, real_summary):
    runs = tmp_path / "runs"
    folder = RunFolder(runs, model="ranker")
    folder.write_summary(real_summary)
    folder.write_spec({"seed": 7})
    folder.write_environment({"host": {"hostname": "h"}})
    folder.finish("failed", "the target exited early (code 1)")
    with Store(runs / "caliper.db") as store:
        assert store.save_run(folder) == folder.run_id
        run = store.get_run(folder.run_id)
        assert store.resolve_folder(run) == folder.path.resolve()
    assert run.folder == folder.run_id  # relative to the database's directory
    assert (run.status, run.reason) == ("failed", "the target exited early (code 1)")
    assert run.summary == load_summary(folder) and run.summary["run_id"] == folder.run_id
    assert run.spec == {"seed": 7} and run.environment == {"host": {"hostname": "h"}}


def test_a_run_that_failed_before_its_summary_is_still_indexed(tmp_path):
    runs = tmp_path / "runs"
    folder = RunFolder(runs, "20261127-041500-ranker-abcdef")
    folder.finish("failed", "serve-model exited with code 1 before it was ready")
    with Store(runs / "caliper.db") as store:
        store.save_run(folder)
        run = store.get_run(folder.run_id)
        assert (run.status, run.reason) == ("failed",
                                            "serve-model exited with code 1 before it was ready")
        assert run.created_at == "2026-11-27T04:15:00.000Z"  # from the run id
        assert (run.model, run.p99_ms, run.error_rate) == (None, None, None)
        assert run.summary == {"run_id": folder.run_id, "started_at": "2026-11-27T04:15:00Z"}
        # a run that claims to have completed must have its summary
        done = RunFolder(runs, model="m")
        done.finish("completed")
        with pytest.raises(DataError, match="has no summary.json"):
            store.save_run(done)
        assert store.get_run(done.run_id) is None


def test_a_folder_outside_the_database_directory_is_stored_absolute(tmp_path, real_summary):
    folder = RunFolder(tmp_path / "elsewhere", model="m")
    folder.write_summary(real_summary)
    with Store(tmp_path / "db" / "caliper.db") as store:
        store.save_run(folder.path)
        run = store.get_run(folder.run_id)
        assert run.folder == folder.path.resolve().as_posix()
        assert store.resolve_folder(run) == folder.path.resolve()


@pytest.mark.parametrize("interrupted, given, expected", [
    (False, None, "completed"),  # a bare summary that ran to the end
    (True, None, "interrupted"),  # Ctrl-C is in the summary
    (False, "failed", "failed"),  # the caller knows better
])
def test_status_of_a_bare_summary(interrupted, given, expected, tmp_path, real_summary):
    with Store(tmp_path / "caliper.db") as store:
        store.save_run(summary_like(real_summary, "x", interrupted=interrupted), status=given)
        assert store.get_run("x").status == expected
        with pytest.raises(UsageError, match="run status"):
            store.save_run(summary_like(real_summary, "y"), status="weird")


def test_saving_again_updates_the_run(store, real_summary):
    store.save_run(summary_like(real_summary, "r1", model="ranker", version="1", p99_ms=31.0),
                   tags=["rerun"], status="interrupted", reason="Ctrl-C")
    run = store.get_run("r1")
    assert (run.p99_ms, run.status, run.reason) == (31.0, "interrupted", "Ctrl-C")
    assert run.tags == ("nightly", "rerun")  # tags are added, not replaced
    assert store.count_runs() == len(RUNS)


def test_assertions_and_the_verdict(store):
    gates = [{"expression": "p99<120ms", "passed": True, "actual": 30.0},
             ("error_rate<0.1%", False, 0.05),
             SimpleNamespace(expression="throughput>=200rps", passed=True, actual=None)]
    store.save_run(store.get_run("r1").summary, assertions=gates)
    run = store.get_run("r1")
    assert run.verdict == "fail"
    assert run.assertions == (AssertionResult("p99<120ms", True, 30.0),
                              AssertionResult("error_rate<0.1%", False, 0.05),
                              AssertionResult("throughput>=200rps", True, None))
    # saved again without assertions: they stay, and so does the verdict
    store.save_run(run.summary)
    assert store.get_run("r1").assertions == run.assertions
    assert store.get_run("r1").verdict == "fail"
    # new assertions replace the old ones
    store.save_run(run.summary, assertions=[("p99<120ms", True, 30.0)])
    assert store.get_run("r1").verdict == "pass"
    assert len(store.get_run("r1").assertions) == 1
    store.save_run(run.summary, assertions=[])
    assert store.get_run("r1").verdict is None and store.get_run("r1").assertions == ()


@pytest.mark.parametrize("gate, message", [
    ({"passed": True}, "needs an expression"),  # no expression
    (("  ", True), "needs an expression"),  # a blank one
    (("p99<1ms", "yes"), "passed must be true or false"),  # not a bool
    (("p99<1ms", True, "fast"), "actual must be a number"),  # not a number
])
def test_malformed_assertions_are_refused(gate, message, store):
    with pytest.raises(UsageError, match=message):
        store.save_run(store.get_run("r2").summary, assertions=[gate])
    assert store.get_run("r2").assertions == ()  # nothing half-saved


# --- listing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("filters, expected", [
    ({}, ["s2", "r4", "r3", "s1", "r2", "r1"]),  # everything, newest first
    ({"model": "ranker"}, ["r4", "r3", "r2", "r1"]),  # one model
    ({"model": "ranker", "version": "1"}, ["r2", "r1"]),  # one version of it
    ({"version": "7"}, ["s1"]),  # a version alone
    ({"tag": "ci"}, ["s2", "r3", "r2"]),  # one tag
    ({"tag": ["ci", "nightly"]}, ["r2"]),  # several tags: runs having all of them
    ({"tag": "ci", "model": "scorer"}, ["s2"]),  # filters combine
    ({"status": "failed"}, ["r4"]),  # by status
    ({"since": "2026-11-03T00:00:00Z"}, ["s2", "r4", "r3"]),  # from a time on
    ({"until": "2026-11-02T11:00:00+00:00"}, ["r2", "r1"]),  # before a time
    ({"since": "2026-11-02", "until": "2026-11-03"}, ["s1", "r2"]),  # a window (naive = UTC)
    ({"model": "nobody"}, []),  # nothing matches
    ({"tag": "never-used"}, []),  # an unknown tag
])
def test_filters(filters, expected, store):
    assert ids(store.list_runs(**filters)) == expected
    assert store.count_runs(**filters) == len(expected)


@pytest.mark.parametrize("order_by, expected", [
    ("created_at", ["r1", "r2", "s1", "r3", "r4", "s2"]),  # oldest first
    ("-created_at", ["s2", "r4", "r3", "s1", "r2", "r1"]),  # newest first
    ("p99_ms", ["s2", "r3", "r1", "r2", "s1", "r4"]),  # fastest first; no p99 goes last
    ("-p99_ms", ["s1", "r2", "r1", "r3", "s2", "r4"]),  # slowest first; no p99 still last
    ("p99_ms desc", ["s1", "r2", "r1", "r3", "s2", "r4"]),  # the SQL-like spelling
    ("  model ASC ", ["r1", "r2", "r3", "r4", "s1", "s2"]),  # ties broken by run id
    ("-model", ["s2", "s1", "r4", "r3", "r2", "r1"]),  # descending ties by run id too
    ("run_id", ["r1", "r2", "r3", "r4", "s1", "s2"]),
])
def test_sorting(order_by, expected, store):
    assert ids(store.list_runs(order_by=order_by)) == expected


def test_pages_cover_every_run_once(store):
    whole = ids(store.list_runs(order_by="p99_ms", limit=None))
    pages = [ids(store.list_runs(order_by="p99_ms", limit=4, offset=o)) for o in (0, 4, 8)]
    assert [len(p) for p in pages] == [4, 2, 0]
    assert pages[0] + pages[1] == whole and len(set(whole)) == len(RUNS)
    assert ids(store.list_runs(model="ranker", limit=1, offset=1)) == ["r3"]
    assert store.list_runs(limit=0) == []


def test_listings_are_light_unless_asked(store):
    light = store.list_runs(model="scorer")
    assert all(r.summary is None and r.spec is None for r in light)
    assert light[0].tags == ("ci", "release")
    full = store.list_runs(model="scorer", full=True)
    assert full[0].summary["run_id"] == "s2"
    assert full[0].to_dict()["tags"] == ["ci", "release"]


# --- tags ---------------------------------------------------------------------------------------


def test_tags(store):
    assert store.tags() == {"ci": 3, "nightly": 3, "release": 1}
    store.add_tags("r4", ["release", " baseline "])  # surrounding spaces are trimmed
    store.add_tags("r4", "release")  # adding twice changes nothing
    assert store.get_run("r4").tags == ("baseline", "release")
    store.remove_tags("r4", ["release", "not-there"])
    assert store.get_run("r4").tags == ("baseline",)
    assert store.tags() == {"baseline": 1, "ci": 3, "nightly": 3, "release": 1}
    with pytest.raises(UsageError, match="no run 'ghost'"):
        store.add_tags("ghost", "x")


@pytest.mark.parametrize("tag", [
    "",  # empty
    "   ",  # blank
    "x" * 65,  # too long
    "a\nb",  # a newline
    "a\x1fb",  # the separator used when listing
    7,  # not text
])
def test_malformed_tags_are_refused(tag, store):
    with pytest.raises(UsageError, match="tag"):
        store.add_tags("r1", [tag])
    with pytest.raises(UsageError, match="tag"):
        store.save_run(store.get_run("r2").summary, tags=[tag])
    assert store.get_run("r1").tags == ("nightly",)


# --- deleting and importing ---------------------------------------------------------------------


def test_deleting_a_run_takes_its_tags_and_assertions(store):
    store.save_run(store.get_run("r2").summary, assertions=[("p99<1ms", False, 45.0)])
    assert store.delete_run("r2") is True
    assert store.get_run("r2") is None and store.delete_run("r2") is False
    raw = sqlite3.connect(store.path)
    assert raw.execute("SELECT COUNT(*) FROM run_tags WHERE run_id = 'r2'").fetchone() == (0,)
    assert raw.execute("SELECT COUNT(*) FROM assertions WHERE run_id = 'r2'").fetchone() == (0,)
    assert store.tags() == {"ci": 2, "nightly": 2, "release": 1}


def test_deleting_with_the_folder_removes_only_a_run_folder(tmp_path, real_summary):
    runs = tmp_path / "runs"
    folder = RunFolder(runs, model="m")
    folder.write_summary(real_summary)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    with Store(runs / "caliper.db") as store:
        store.save_run(folder)
        assert store.delete_run(folder.run_id, remove_folder=True)
        assert not folder.path.exists()
        # a row whose folder points at something that is not this run's folder
        raw = sqlite3.connect(store.path)
        store.save_run(summary_like(real_summary, "victim"))
        raw.execute("UPDATE runs SET folder = ? WHERE run_id = 'victim'", (str(precious),))
        raw.commit()
        assert store.delete_run("victim", remove_folder=True)
    assert (precious / "data.txt").read_text() == "keep me"


def test_import_folders_saves_the_runs_the_database_lacks(tmp_path, real_summary):
    runs = tmp_path / "runs"
    known, unknown, running, crashed = (RunFolder(runs, f"20261127-04150{i}-m-00000{i}")
                                        for i in range(4))
    for folder in (known, unknown):
        folder.write_summary(real_summary)
        folder.finish("completed")
    crashed.finish("failed", "crashed")
    with Store(runs / "caliper.db") as store:
        store.save_run(known, tags=["kept"])
        # still running without a summary: skipped; failed before its summary: imported
        assert store.import_folders(runs) == [unknown.run_id, crashed.run_id]
        assert store.import_folders(runs) == []
        assert store.get_run(known.run_id).tags == ("kept",)
        assert store.count_runs() == 3 and store.get_run(running.run_id) is None

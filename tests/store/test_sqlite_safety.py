"""The run database under hostile input and shared use: injections, bad paging, concurrency."""

from __future__ import annotations

import threading

import pytest

from modelcaliper.errors import UsageError
from modelcaliper.store import Store
from tests.store.runs import RUNS, ids, summary_like

# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize("filters", [
    {"model": "ranker' OR '1'='1"},  # classic quote breaking
    {"model": "ranker\"; DROP TABLE runs; --"},  # statement stacking
    {"version": "1 OR 1=1"},  # unquoted tautology
    {"tag": "x') OR 1=1 --"},  # inside the tag sub-query
    {"status": "completed' UNION SELECT * FROM schema_migrations --"},  # a union
    {"since": "2026-11-01T00:00:00Z", "model": "%"},  # a LIKE wildcard is just a character
])
def test_injection_in_filters_matches_nothing_and_changes_nothing(filters, store):
    assert store.list_runs(**filters) == []
    assert store.count_runs() == len(RUNS)
    assert store.tags() == {"ci": 3, "nightly": 3, "release": 1}


@pytest.mark.parametrize("order_by", [
    "p99_ms; DROP TABLE runs",  # statement stacking
    "p99_ms, (SELECT COUNT(*) FROM runs)",  # an extra expression
    "run_id desc --",  # a trailing comment
    "summary_json",  # a real column, but not a sort column
    "1",  # a column number
    "-p99_ms desc",  # two descending marks
    "",  # nothing
    None,  # not text
])
def test_sort_columns_outside_the_whitelist_are_refused(order_by, store):
    with pytest.raises(UsageError, match="order_by must be one of"):
        store.list_runs(order_by=order_by)
    assert store.count_runs() == len(RUNS)


@pytest.mark.parametrize("page, message", [
    ({"limit": "1; DROP TABLE runs"}, "limit must be a whole number"),  # text
    ({"limit": -1}, "limit must be a whole number"),  # negative
    ({"limit": 2.5}, "limit must be a whole number"),  # a fraction
    ({"offset": True}, "offset must be a whole number"),  # a bool
    ({"model": 3}, "model filter must be text"),  # not text
    ({"since": "yesterday"}, "time must be ISO 8601"),  # not a time
])
def test_malformed_paging_and_filters_are_refused(page, message, store):
    with pytest.raises(UsageError, match=message):
        store.list_runs(**page)


def test_hostile_text_is_stored_verbatim(tmp_path, real_summary):
    model = "m'); DROP TABLE runs; --"
    tag = "'; DELETE FROM run_tags; --"
    with Store(tmp_path / "caliper.db") as store:
        store.save_run(summary_like(real_summary, "evil", model=model), tags=[tag])
        assert ids(store.list_runs(model=model, tag=tag)) == ["evil"]
        assert store.get_run("evil").model == model
        assert store.tags() == {tag: 1}


# --- sharing ------------------------------------------------------------------------------------


def test_readers_see_whole_runs_while_a_writer_saves(tmp_path, real_summary):
    path = tmp_path / "caliper.db"
    Store(path).close()
    total = 120
    stop = threading.Event()
    problems: list[str] = []
    counts: dict[int, list[int]] = {1: [], 2: []}

    def write() -> None:
        with Store(path) as writer:
            for i in range(total):
                writer.save_run(summary_like(real_summary, f"run-{i:03d}", p99_ms=float(i)),
                                tags=["load", f"batch-{i % 3}"],
                                assertions=[(f"p99<{i}ms", i % 2 == 0, float(i))])
        stop.set()

    def read(reader_id: int) -> None:
        with Store(path) as reader:
            while True:
                done = stop.is_set()
                runs = reader.list_runs(limit=None)
                counts[reader_id].append(len(runs))
                for run in runs:  # a run is never visible without its tags and assertions
                    if len(run.tags) != 2 or len(run.assertions) != 1:
                        problems.append(f"{run.run_id}: {run.tags} {run.assertions}")
                if done:
                    return

    threads = [threading.Thread(target=write)]
    threads += [threading.Thread(target=read, args=(r,)) for r in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == []
    for seen in counts.values():
        assert seen == sorted(seen)  # each reader's view only ever grows
        assert seen[-1] == total
        assert any(0 < count < total for count in seen)  # it read while the writer wrote
    with Store(path) as store:
        assert store.count_runs(tag="batch-0") == total // 3


def test_one_store_can_be_shared_by_threads(tmp_path, real_summary):
    with Store(tmp_path / "caliper.db") as store:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(25):
                    store.save_run(summary_like(real_summary, f"w{worker}-{i}"), tags=["t"])
                    store.list_runs(limit=5)
            except BaseException as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and store.count_runs(tag="t") == 75

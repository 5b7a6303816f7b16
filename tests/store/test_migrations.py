"""Schema and migrations: a new database, upgrading version 1, refusing newer or foreign files."""

from __future__ import annotations

import sqlite3
import threading

import orjson
import pytest

from modelcaliper.errors import DataError
from modelcaliper.store import Store
from modelcaliper.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    current_version,
    migrate,
)
from modelcaliper.store.schema import RUN_COLUMNS
from tests.store.runs import summary_like

INDEXES = {"runs_by_model", "runs_by_model_version", "runs_by_created_at", "run_tags_by_tag",
           "runs_by_status"}


def connect(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def names(db: sqlite3.Connection, kind: str) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()]


def test_an_empty_database_gets_the_whole_schema(tmp_path):
    path = tmp_path / "sub" / "caliper.db"
    with Store(path) as store:
        assert store.schema_version == LATEST_VERSION == 2
        assert store.journal_mode == "wal"
    db = connect(path)
    assert names(db, "table") == {"schema_migrations", "runs", "run_tags", "assertions"}
    assert INDEXES <= names(db, "index")
    # version 2 appended its column to version 1's
    assert columns(db, "runs") == [c for c in RUN_COLUMNS if c != "query_p99_ms"] + [
        "query_p99_ms"]
    assert columns(db, "run_tags") == ["run_id", "tag"]
    assert columns(db, "assertions") == ["run_id", "position", "expression", "passed", "actual"]
    ledger = db.execute("SELECT version, description, applied_at FROM schema_migrations "
                        "ORDER BY version").fetchall()
    assert [row[0] for row in ledger] == [1, 2]
    assert all(row[1] and row[2].endswith("Z") for row in ledger)


def test_reopening_applies_nothing_again(tmp_path):
    path = tmp_path / "caliper.db"
    Store(path).close()
    applied = connect(path).execute("SELECT applied_at FROM schema_migrations").fetchall()
    Store(path).close()
    assert connect(path).execute("SELECT applied_at FROM schema_migrations").fetchall() == applied


def test_a_version_1_database_is_upgraded_and_backfilled(tmp_path, real_summary):
    path = tmp_path / "caliper.db"
    db = connect(path)
    assert migrate(db, up_to=1) == 1
    assert "query_p99_ms" not in columns(db, "runs")
    fanout = summary_like(real_summary, "fanout-run")
    plain = summary_like(real_summary, "plain-run")
    plain["queries"] = None
    for summary in (fanout, plain):  # rows as version 1 wrote them
        db.execute("INSERT INTO runs (run_id, created_at, model, status, p99_ms, summary_json) "
                   "VALUES (?, ?, ?, 'completed', ?, ?)",
                   (summary["run_id"], summary["started_at"], "ranker",
                    summary["latency_ms"]["p99"], orjson.dumps(summary).decode()))
    db.execute("INSERT INTO run_tags VALUES ('fanout-run', 'v1-era')")
    db.close()

    with Store(path) as store:
        assert store.schema_version == 2
        upgraded = store.get_run("fanout-run")
        assert upgraded.query_p99_ms == real_summary["queries"]["latency_ms"]["p99"]
        assert upgraded.tags == ("v1-era",)
        assert store.get_run("plain-run").query_p99_ms is None
        assert [r.run_id for r in store.list_runs(order_by="-query_p99_ms")] == [
            "fanout-run", "plain-run"]
    assert "runs_by_status" in names(connect(path), "index")


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "caliper.db"
    Store(path).close()
    db = connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (3, 'from the future', "
               "'2027-01-01T00:00:00.000Z')")
    db.close()
    with pytest.raises(DataError, match="schema version 3, newer than the 2 this modelcaliper"):
        Store(path)
    # and it was left as it was
    assert current_version(connect(path)) == 3


def test_someone_elses_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    connect(path).execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(DataError, match="not a modelcaliper run store"):
        Store(path)
    assert names(connect(path), "table") == {"orders"}


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "caliper.db"
    path.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(DataError, match="is not a usable run database"):
        Store(path)


def test_a_failing_migration_leaves_the_previous_version(tmp_path):
    path = tmp_path / "caliper.db"
    broken = MIGRATIONS[:1] + (Migration(2, "half done", (
        "CREATE TABLE extra (x INTEGER)",
        "INSERT INTO no_such_table VALUES (1)",  # fails after the first statement ran
    )),)
    db = connect(path)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        migrate(db, broken)
    assert current_version(db) == 1
    assert "extra" not in names(db, "table")  # rolled back with the failed step
    assert not db.in_transaction


def test_a_failing_function_migration_rolls_back_too(tmp_path):
    db = connect(tmp_path / "caliper.db")

    def half(connection: sqlite3.Connection) -> None:
        connection.execute("ALTER TABLE runs ADD COLUMN doomed TEXT")
        raise RuntimeError("backfill failed")

    with pytest.raises(RuntimeError, match="backfill failed"):
        migrate(db, MIGRATIONS[:1] + (Migration(2, "doomed", function=half),))
    assert current_version(db) == 1
    assert "doomed" not in columns(db, "runs")


@pytest.mark.parametrize("versions", [
    (2,),  # does not start at 1
    (1, 3),  # a gap
    (2, 1),  # out of order
    (1, 1),  # a repeat
])
def test_migrations_must_be_numbered_in_order(versions, tmp_path):
    steps = tuple(Migration(v, f"step {v}", ("SELECT 1",)) for v in versions)
    with pytest.raises(ValueError, match="numbered 1, 2"):
        migrate(connect(tmp_path / "caliper.db"), steps)


def test_the_shipped_migrations_are_in_order():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert all(m.description for m in MIGRATIONS)


def test_processes_opening_an_old_database_at_once_apply_each_step_once(tmp_path):
    path = tmp_path / "caliper.db"
    db = connect(path)
    migrate(db, up_to=1)
    db.close()
    start = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            start.wait()
            with Store(path) as store:
                versions.append(store.schema_version)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and versions == [2] * 4
    rows = connect(path).execute("SELECT version FROM schema_migrations").fetchall()
    assert sorted(v for (v,) in rows) == [1, 2]

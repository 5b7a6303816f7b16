"""The run database's schema history: ordered migrations, each applied once, inside a transaction.

``schema_migrations`` (version, description, applied_at) lists what has been applied. Opening
a database runs ``migrate``: every migration newer than the database's version is applied in
order, each in its own ``BEGIN IMMEDIATE`` transaction together with its row in
``schema_migrations`` — so a failing migration leaves the database exactly at the previous
version, and two processes opening an old database at once apply each step only once. A
database written by a newer modelcaliper (a version above ``LATEST_VERSION``) is refused
rather than guessed at.

A migration is a tuple of SQL statements or a function of the connection. Statements run one
by one with ``execute`` (``executescript`` would commit the open transaction first). Never edit
a released migration: add the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from modelcaliper.errors import DataError
from modelcaliper.store.schema import query_p99_of

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "current_version", "migrate"]


@dataclass(frozen=True)
class Migration:
    """One schema step: its version, what it does, and its SQL statements or function."""

    version: int
    description: str
    statements: tuple[str, ...] = ()
    function: Callable[[sqlite3.Connection], None] | None = None

    def apply(self, connection: sqlite3.Connection) -> None:
        """Run the step on ``connection`` (the caller holds the transaction)."""
        for statement in self.statements:
            connection.execute(statement)
        if self.function is not None:
            self.function(connection)


_V1 = (
    """CREATE TABLE runs (
        run_id             TEXT PRIMARY KEY,
        created_at         TEXT NOT NULL,
        model              TEXT,
        model_version      TEXT,
        protocol           TEXT,
        encoding           TEXT,
        compression        TEXT,
        target_kind        TEXT,
        target_url         TEXT,
        rate_per_s         REAL,
        batch_size         INTEGER,
        candidates         INTEGER,
        arrival            TEXT,
        duration_s         REAL,
        status             TEXT NOT NULL
                           CHECK (status IN ('running', 'completed', 'interrupted', 'failed')),
        reason             TEXT,
        verdict            TEXT CHECK (verdict IS NULL OR verdict IN ('pass', 'fail')),
        p50_ms             REAL,
        p99_ms             REAL,
        error_rate         REAL,
        deadline_miss_rate REAL,
        achieved_rps       REAL,
        folder             TEXT,
        summary_json       TEXT NOT NULL,
        spec_json          TEXT,
        environment_json   TEXT
    )""",
    """CREATE TABLE run_tags (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        tag    TEXT NOT NULL,
        PRIMARY KEY (run_id, tag)
    ) WITHOUT ROWID""",
    """CREATE TABLE assertions (
        run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        expression TEXT NOT NULL,
        passed     INTEGER NOT NULL CHECK (passed IN (0, 1)),
        actual     REAL,
        PRIMARY KEY (run_id, position)
    )""",
    "CREATE INDEX runs_by_model ON runs (model, created_at)",
    "CREATE INDEX runs_by_model_version ON runs (model_version, created_at)",
    "CREATE INDEX runs_by_created_at ON runs (created_at)",
    "CREATE INDEX run_tags_by_tag ON run_tags (tag, run_id)",
)


def _add_query_p99(connection: sqlite3.Connection) -> None:
    """Add ``runs.query_p99_ms`` and fill it in from the stored summaries."""
    connection.execute("ALTER TABLE runs ADD COLUMN query_p99_ms REAL")
    rows = connection.execute("SELECT run_id, summary_json FROM runs").fetchall()
    for run_id, summary_json in rows:
        connection.execute("UPDATE runs SET query_p99_ms = ? WHERE run_id = ?",
                           (query_p99_of(orjson.loads(summary_json)), run_id))
    connection.execute("CREATE INDEX runs_by_status ON runs (status, created_at)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, run_tags and assertions; indexes on model, version, time and tag", _V1),
    Migration(2, "runs.query_p99_ms (filled from the summaries); index on status",
              function=_add_query_p99),
)
"""Every migration, in version order (1, 2, ...)."""

LATEST_VERSION = MIGRATIONS[-1].version
"""The schema version this modelcaliper writes."""

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return found is not None


def current_version(connection: sqlite3.Connection) -> int:
    """The highest applied migration (0 for an empty database)."""
    if not _has_table(connection, "schema_migrations"):
        return 0
    (version,) = connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(version or 0)


def migrate(connection: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS,
            up_to: int | None = None, name: str = "the run database") -> int:
    """Apply the pending migrations (up to ``up_to``) in order; returns the version reached.

    ``connection`` must be in autocommit mode (``isolation_level=None``): each step opens its
    own transaction.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, got {versions}")
    latest = versions[-1] if versions else 0
    target = latest if up_to is None else min(up_to, latest)
    # Read first, without a write lock: an up-to-date database (the usual case) is left alone,
    # so opening the store never waits behind a run that is writing.
    _check_ours(connection, name)
    version = current_version(connection)
    if version > latest:
        raise DataError(f"{name} has schema version {version}, newer than the {latest} this "
                        "modelcaliper knows; upgrade modelcaliper to use it")
    if version >= target:
        return version
    with _immediate(connection):
        _check_ours(connection, name)
        connection.execute(_LEDGER)
    for migration in migrations[:target]:
        with _immediate(connection):
            # Another process may have applied this step while we waited for the lock.
            if current_version(connection) >= migration.version:
                continue
            migration.apply(connection)
            connection.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) "
                "VALUES (?, ?, ?)",
                (migration.version, migration.description,
                 datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")))
    return current_version(connection)


def _check_ours(connection: sqlite3.Connection, name: str) -> None:
    """DataError when the database has tables but no ledger: someone else's database."""
    if _has_table(connection, "schema_migrations"):
        return
    (tables,) = connection.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%'").fetchone()
    if tables:
        raise DataError(f"{name} is an SQLite database but not a modelcaliper run store "
                        "(it has no schema_migrations table)")


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken up front so the step never fails half-way on a lock."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")

"""The run database (default ``runs/caliper.db``): every run indexed by model, version, tags, time.

``Store`` opens (or creates) the SQLite file, brings its schema up to date (``migrations``)
and answers the questions a report, ``compare`` or the web UI asks: one run with its
documents, or a filtered, sorted page of runs. The file is in WAL mode with a busy timeout:
one process writes (a run saving itself) while others read (the UI) without blocking each
other. Every write is one ``BEGIN IMMEDIATE`` transaction and every multi-query read one
snapshot, so a reader never sees a run without its tags or assertions.

Filters and sorting are safe by construction: values are always bound parameters, and the
only identifiers in SQL are this module's constants — a sort column outside
``schema.SORT_COLUMNS`` is refused, not quoted.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError, UsageError
from modelcaliper.store._files import dumps_json, plain
from modelcaliper.store.migrations import migrate
from modelcaliper.store.runfolder import (
    STATUSES,
    RunFolder,
    check_run_id,
    indexable_summary,
    list_run_folders,
    load_environment,
    load_spec,
    load_status,
)
from modelcaliper.store.schema import (
    LIST_COLUMNS,
    RUN_COLUMNS,
    SORT_COLUMNS,
    AssertionResult,
    StoredRun,
    normalise_time,
    run_row,
)

__all__ = ["DEFAULT_PATH", "Store"]

DEFAULT_PATH = "runs/caliper.db"
"""Where ``caliper run`` keeps its database unless told otherwise."""

_TAG_SEPARATOR = "\x1f"  # tags cannot hold control characters, so this one splits them safely
_MAX_TAG_CHARS = 64
_CHUNK_IDS = 500

# Every SQL text below is assembled once, from constants only.
_UPSERT = (f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(RUN_COLUMNS))}) ON CONFLICT (run_id) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c != "run_id"))
_TAGS_OF = ("(SELECT group_concat(tag, char(31)) FROM run_tags t "
            "WHERE t.run_id = runs.run_id) AS tags")
_SELECT_LIST = f"SELECT {', '.join(LIST_COLUMNS)}, {_TAGS_OF} FROM runs"
_SELECT_FULL = f"SELECT {', '.join(RUN_COLUMNS)}, {_TAGS_OF} FROM runs"
_ORDER = {(column, descending): f" ORDER BY {column} {'DESC' if descending else 'ASC'} NULLS LAST,"
                                f" run_id {'DESC' if descending else 'ASC'}"
          for column in SORT_COLUMNS for descending in (False, True)}
_FILTERS = {
    "model": "model = ?",
    "version": "model_version = ?",
    "status": "status = ?",
    "since": "created_at >= ?",
    "until": "created_at < ?",
    "tag": "EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = runs.run_id AND t.tag = ?)",
}


def _check_tag(tag: Any) -> str:
    text = tag.strip() if isinstance(tag, str) else None
    if not text or len(text) > _MAX_TAG_CHARS or any(ord(ch) < 32 or ord(ch) == 127
                                                     for ch in text):
        raise UsageError(f"tag {tag!r} must be 1-{_MAX_TAG_CHARS} printable characters")
    return text


def _tag_list(tags: str | Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    items = [tags] if isinstance(tags, str) else list(tags)
    return sorted({_check_tag(tag) for tag in items})


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{name} must be a whole number ≥ 0, got {value!r}")
    return value


def _order_clause(order_by: str) -> str:
    text = order_by.strip() if isinstance(order_by, str) else ""
    descending = text.startswith("-")
    words = text.lstrip("-").split()
    if len(words) == 2 and words[1].lower() in ("asc", "desc") and not descending:
        descending = words[1].lower() == "desc"
        words = words[:1]
    column = words[0] if len(words) == 1 else None
    if column not in SORT_COLUMNS:
        raise UsageError(f"order_by must be one of {', '.join(SORT_COLUMNS)} (with '-' or "
                         f"' desc' for descending), got {order_by!r}")
    return _ORDER[(column, descending)]


def _verdict(assertions: Sequence[AssertionResult]) -> str | None:
    if not assertions:
        return None
    return "pass" if all(a.passed for a in assertions) else "fail"


class Store:
    """The SQLite index of runs: open (creating and migrating), save, get, list, tag, delete."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, busy_timeout_s: float = 10.0) -> None:
        self.path = str(path)
        in_memory = self.path == ":memory:"
        if not in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._base = None if in_memory else Path(self.path).resolve().parent
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise DataError(f"cannot open the run database {self.path}: {exc}") from None
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self.journal_mode: str = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = NORMAL")
            self.schema_version = migrate(self._db, name=self.path)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DataError(f"{self.path} is not a usable run database ({exc})") from None
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for every query of the block
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------ writing

    def _folder_text(self, folder: Path) -> str:
        """The folder relative to the database's directory when inside it, else absolute."""
        resolved = folder.resolve()
        if self._base is not None and resolved.is_relative_to(self._base):
            return resolved.relative_to(self._base).as_posix()
        return resolved.as_posix()

    def resolve_folder(self, run: StoredRun) -> Path | None:
        """Where a stored run's folder is (None when it was saved without one)."""
        if run.folder is None:
            return None
        folder = Path(run.folder)
        return folder if folder.is_absolute() or self._base is None else self._base / folder

    def save_run(self, run: RunFolder | str | Path | Mapping[str, Any], *,
                 tags: str | Iterable[str] | None = None,
                 assertions: Iterable[Any] | None = None, status: str | None = None,
                 reason: str | None = None, spec: Any = None,
                 environment: Mapping[str, Any] | None = None,
                 model_version: str | None = None, target_kind: str | None = None) -> str:
        """Insert or update a run from its folder (or a bare summary); returns its run id.

        From a folder the summary, spec, environment and status are read from its files unless
        given. Saving a run again updates it: tags are added to its tags, and assertions, when
        given, replace its assertions. The verdict follows the stored assertions.
        """
        folder: Path | None = None
        if isinstance(run, Mapping):
            summary = dict(run)
        else:
            folder = run.path if isinstance(run, RunFolder) else Path(run)
            if status is None:
                stored = load_status(folder)
                status, reason = stored["status"], reason or stored.get("reason")
            summary = {**indexable_summary(folder, status), "run_id": folder.name}
            spec = load_spec(folder) if spec is None else spec
            environment = load_environment(folder) if environment is None else environment
        if status is None:
            status = "interrupted" if summary.get("interrupted") else "completed"
        if status not in STATUSES:
            raise UsageError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")
        run_id = check_run_id(summary.get("run_id"))  # type: ignore[arg-type]
        new_tags = _tag_list(tags)
        checked = None if assertions is None else [AssertionResult.coerce(a) for a in assertions]
        spec_doc = plain(spec) if spec is not None else None
        with self._write() as db:
            if checked is None:
                rows = db.execute("SELECT expression, passed, actual FROM assertions "
                                  "WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
                verdict = _verdict([AssertionResult(r[0], bool(r[1]), r[2]) for r in rows])
            else:
                verdict = _verdict(checked)
            row = run_row(
                summary, status=status, reason=reason,
                spec=spec_doc if isinstance(spec_doc, Mapping) else None,
                folder=None if folder is None else self._folder_text(folder),
                model_version=model_version, target_kind=target_kind, verdict=verdict,
                summary_json=dumps_json(summary, indent=False).decode(),
                spec_json=None if spec_doc is None else dumps_json(spec_doc, indent=False).decode(),
                environment_json=None if environment is None
                else dumps_json(environment, indent=False).decode())
            db.execute(_UPSERT, [row[column] for column in RUN_COLUMNS])
            db.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)",
                           [(run_id, tag) for tag in new_tags])
            if checked is not None:
                db.execute("DELETE FROM assertions WHERE run_id = ?", (run_id,))
                db.executemany(
                    "INSERT INTO assertions (run_id, position, expression, passed, actual) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(run_id, i, a.expression, int(a.passed), a.actual)
                     for i, a in enumerate(checked)])
        return run_id

    def add_tags(self, run_id: str, tags: str | Iterable[str]) -> None:
        """Tag a stored run; UsageError if there is no such run."""
        checked = _tag_list(tags)
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise UsageError(f"no run {run_id!r} in {self.path}")
            db.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)",
                           [(run_id, tag) for tag in checked])

    def remove_tags(self, run_id: str, tags: str | Iterable[str]) -> None:
        """Remove tags from a run (tags it does not have are ignored)."""
        checked = _tag_list(tags)
        with self._write() as db:
            db.executemany("DELETE FROM run_tags WHERE run_id = ? AND tag = ?",
                           [(run_id, tag) for tag in checked])

    def delete_run(self, run_id: str, *, remove_folder: bool = False) -> bool:
        """Forget a run (its tags and assertions too); True if it was stored.

        With ``remove_folder`` its run folder goes as well — only a folder named after the run
        that holds a run's files, so a wrong path in the database cannot delete anything else.
        """
        with self._write() as db:
            found = db.execute("SELECT folder FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if found is None:
                return False
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        if remove_folder and found["folder"]:
            folder = Path(found["folder"])
            folder = folder if folder.is_absolute() or self._base is None else self._base / folder
            if folder.name == run_id and folder.is_dir() and (
                    (folder / "status.json").exists() or (folder / "summary.json").exists()):
                shutil.rmtree(folder)
        return True

    def import_folders(self, root: str | Path = "runs") -> list[str]:
        """Save the finished run folders under ``root`` that the database lacks; their ids.

        A folder counts as finished when it has a summary, or when it failed or was
        interrupted before writing one; a folder still ``running`` without one is skipped.
        """
        imported = []
        for folder in list_run_folders(root):
            finished = (folder / "summary.json").exists() or load_status(folder)["status"] in (
                "failed", "interrupted")
            if finished and self.get_run(folder.name) is None:
                imported.append(self.save_run(folder))
        return imported

    # ------------------------------------------------------------------ reading

    def _record(self, row: sqlite3.Row, assertions: Mapping[str, list[AssertionResult]],
                full: bool) -> StoredRun:
        values = {column: row[column] for column in LIST_COLUMNS}
        tags = tuple(sorted(row["tags"].split(_TAG_SEPARATOR))) if row["tags"] else ()
        documents: dict[str, Any] = {}
        if full:
            for name in ("summary", "spec", "environment"):
                text = row[f"{name}_json"]
                documents[name] = None if text is None else orjson.loads(text)
        return StoredRun(**values, tags=tags,
                         assertions=tuple(assertions.get(values["run_id"], ())), **documents)

    def _assertions(self, db: sqlite3.Connection,
                    run_ids: Sequence[str]) -> dict[str, list[AssertionResult]]:
        out: dict[str, list[AssertionResult]] = {}
        for start in range(0, len(run_ids), _CHUNK_IDS):
            chunk = list(run_ids[start : start + _CHUNK_IDS])
            marks = ", ".join("?" * len(chunk))
            rows = db.execute(
                "SELECT run_id, expression, passed, actual FROM assertions "
                f"WHERE run_id IN ({marks}) ORDER BY run_id, position", chunk).fetchall()
            for row in rows:
                out.setdefault(row[0], []).append(AssertionResult(row[1], bool(row[2]), row[3]))
        return out

    def get_run(self, run_id: str) -> StoredRun | None:
        """One run with its summary, spec and environment, or None if it is not stored."""
        with self._read() as db:
            row = db.execute(f"{_SELECT_FULL} WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            return self._record(row, self._assertions(db, [run_id]), full=True)

    def _where(self, model: str | None, version: str | None, tag: str | Iterable[str] | None,
               status: str | None, since: str | datetime | None,
               until: str | datetime | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for key, value in (("model", model), ("version", version), ("status", status)):
            if value is not None:
                if not isinstance(value, str):
                    raise UsageError(f"{key} filter must be text, got {value!r}")
                clauses.append(_FILTERS[key])
                params.append(value)
        for key, moment in (("since", since), ("until", until)):
            if moment is not None:
                clauses.append(_FILTERS[key])
                params.append(normalise_time(moment))
        for one in _tag_list(tag):
            clauses.append(_FILTERS["tag"])
            params.append(one)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_runs(self, *, model: str | None = None, version: str | None = None,
                  tag: str | Iterable[str] | None = None, status: str | None = None,
                  since: str | datetime | None = None, until: str | datetime | None = None,
                  limit: int | None = 50, offset: int = 0, order_by: str = "-created_at",
                  full: bool = False) -> list[StoredRun]:
        """A page of runs matching every filter given (several tags: runs having all of them).

        ``order_by`` is a column of ``SORT_COLUMNS``, ``-column`` or ``column desc`` for
        descending (ties broken by run id, nulls last); ``limit`` None means no limit. Without
        ``full`` the summary, spec and environment are left out (None): listings stay light.
        """
        where, params = self._where(model, version, tag, status, since, until)
        order = _order_clause(order_by)
        page = [-1 if limit is None else _whole(limit, "limit"), _whole(offset, "offset")]
        select = _SELECT_FULL if full else _SELECT_LIST
        with self._read() as db:
            rows = db.execute(f"{select}{where}{order} LIMIT ? OFFSET ?",
                              params + page).fetchall()
            assertions = self._assertions(db, [row["run_id"] for row in rows])
            return [self._record(row, assertions, full) for row in rows]

    def count_runs(self, *, model: str | None = None, version: str | None = None,
                   tag: str | Iterable[str] | None = None, status: str | None = None,
                   since: str | datetime | None = None,
                   until: str | datetime | None = None) -> int:
        """How many runs match the filters (as ``list_runs`` takes them)."""
        where, params = self._where(model, version, tag, status, since, until)
        with self._read() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM runs{where}", params).fetchone()[0])

    def tags(self) -> dict[str, int]:
        """Every tag in use and how many runs carry it, by tag."""
        with self._read() as db:
            rows = db.execute("SELECT tag, COUNT(*) FROM run_tags GROUP BY tag ORDER BY tag")
            return {row[0]: int(row[1]) for row in rows.fetchall()}

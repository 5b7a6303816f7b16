"""Where a run named on the command line is: a run folder, or a run id in the run database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["resolve_runs"]


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "summary.json").exists() or (path / "status.json").exists())


def resolve_runs(names: list[str], database: str | Path) -> list[tuple[Path, Any]]:
    """(folder, StoredRun or None) of each name: a folder path, else a run id in ``database``.

    The database is only opened when it exists (reading never creates one); a folder given
    by path gets its index row too when the database knows its id.
    """
    from modelcaliper.store import Store, check_run_id

    database = Path(database)
    store = Store(database) if database.is_file() else None
    out: list[tuple[Path, Any]] = []
    try:
        for name in names:
            path = Path(name)
            if _is_run_folder(path):
                stored = store.get_run(path.name) if store is not None else None
                out.append((path, stored))
                continue
            try:
                check_run_id(name)
            except UsageError:
                raise UsageError(f"run {name!r} is not a run folder (no summary.json or "
                                 "status.json in it) nor a run id") from None
            stored = store.get_run(name) if store is not None else None
            folder = store.resolve_folder(stored) if store is not None and stored else None
            if folder is None and _is_run_folder(database.parent / name):
                folder = database.parent / name
            if folder is None or not folder.is_dir():
                where = f"in {database}" if store is not None else f"({database} does not exist)"
                raise UsageError(f"run {name!r} was not found {where}; give its run folder "
                                 "or --store")
            out.append((folder, stored))
    finally:
        if store is not None:
            store.close()
    return out

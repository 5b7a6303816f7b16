"""Atomic file writes and the JSON form of stored documents, shared by the store's writers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson

__all__ = ["atomic_path", "atomic_write", "dumps_json", "plain"]

_COMPACT_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_JSON_OPTIONS = _COMPACT_OPTIONS | orjson.OPT_INDENT_2


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``path``, renamed over it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            temporary.unlink()
        raise
    # The rename itself is durable once the directory entry is on disk.
    with suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part."""
    with atomic_path(Path(path)) as temporary:
        temporary.write_bytes(data)


def plain(value: Any) -> Any:
    """A spec-like object as a JSON-ready mapping (``to_dict()``, ``describe()`` or a mapping)."""
    for method in ("to_dict", "describe"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    converted = plain(value)
    if converted is not value:
        return converted
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def dumps_json(value: Any, *, indent: bool = True) -> bytes:
    """JSON of ``value`` (numpy values, paths, sets and spec objects converted); indented files
    end with a newline, compact documents (for the database) do not."""
    if not indent:
        return orjson.dumps(value, default=_json_default, option=_COMPACT_OPTIONS)
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS) + b"\n"

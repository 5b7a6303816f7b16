"""The New run form's ground rules: which models and datasets it may use, and its values checked.

- **Roots.** ``caliper ui --models-dir DIR`` (repeatable) and ``--data-dir DIR`` name the only
  places the form can reach. A path from the form is accepted only when it names something
  inside one of them: no ``..`` part, an absolute path only when it lies under a root, and
  the path with every symlink resolved must still lie under a root (a link pointing out is
  refused). For a dataset directory every file it holds is checked the same way.
- **Discovery.** ``discover_models`` lists ``.onnx`` files, SavedModel directories, directories
  holding ``model.onnx`` and model base paths of numbered versions (with the versions);
  ``discover_datasets`` lists the files the workload loader reads (Parquet, CSV, JSON lines,
  TFRecord, optionally compressed) and directories of one kind of data file. Hidden entries
  and links leading out of the roots are left out; listings are bounded.
- **Values.** ``build_form_spec`` turns the form's fields into a ``RunSpec`` through
  ``config.build_spec``, exactly as ``caliper run`` and a config file do, so a bad value gives
  the command's one-line message. Only the fields in ``FIELDS`` exist: nothing the form sends
  can launch a command, write files elsewhere or pick another database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from modelcaliper.errors import DataError, UsageError

__all__ = ["FIELDS", "MAX_LISTED", "NewRunSettings", "build_form_spec", "confine",
           "discover_datasets", "discover_models"]

MAX_LISTED = 500
"""At most this many models (and datasets) are listed."""
_MAX_DEPTH = 4
_MAX_DATA_FILES = 10_000  # files of one dataset directory checked for links leading out

_NUMBER = "number"
_TEXT = "text"
_LIST = "list"
FIELDS: dict[str, str] = {
    "model": _TEXT, "model_version": _TEXT, "data": _TEXT, "sample": _NUMBER,
    "where": _TEXT, "group_by": _TEXT, "query_size": _NUMBER, "candidates": _NUMBER,
    "rps": _NUMBER, "arrival": _TEXT, "burst_multiplier": _NUMBER, "burst_duration": _TEXT,
    "calm_duration": _TEXT, "steps": _TEXT, "batch_size": _NUMBER, "protocol": _TEXT,
    "encoding": _TEXT, "compression": _TEXT, "duration": _TEXT, "warmup": _TEXT,
    "deadline": _TEXT, "assert": _LIST, "tag": _LIST,
}
"""The form's fields (``caliper run`` option names) and the JSON type each takes: text, a
number (or text holding one, as on the command line), or a list of texts."""
FORM_SOURCE = "the new-run form"


@dataclass(frozen=True)
class NewRunSettings:
    """Where the form may look (resolved roots) and where its runs are stored."""

    models_dirs: tuple[Path, ...]
    data_dirs: tuple[Path, ...]
    database: Path

    @classmethod
    def create(cls, models_dirs: Sequence[str | Path], data_dirs: Sequence[str | Path],
               database: str | Path) -> NewRunSettings:
        """Check that every root is a directory and resolve it (UsageError otherwise)."""
        def roots(paths: Sequence[str | Path], flag: str) -> tuple[Path, ...]:
            found = []
            for path in paths:
                if not Path(path).is_dir():
                    raise UsageError(f"{flag} {path} is not a directory")
                found.append(Path(path).resolve())
            return tuple(dict.fromkeys(found))

        return cls(roots(models_dirs, "--models-dir"), roots(data_dirs, "--data-dir"),
                   Path(database).resolve())

    @property
    def enabled(self) -> bool:
        """New runs need at least one model root."""
        return bool(self.models_dirs)


# ---------------------------------------------------------------------- confinement


def _under(path: Path, roots: Sequence[Path]) -> Path | None:
    return next((root for root in roots if path == root or path.is_relative_to(root)), None)


def confine(text: Any, roots: Sequence[Path], what: str) -> Path:
    """The path ``text`` names inside one of ``roots``, symlinks resolved, or a UsageError."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{what} must be a path inside the configured directories")
    text = text.strip()
    if "\x00" in text:
        raise UsageError(f"{what} {text!r} is not a valid path")
    if ".." in PurePath(text).parts:
        raise UsageError(f"{what} {text!r} must not contain '..'; pick one from the list")
    given = Path(text)
    if given.is_absolute():
        if _under(Path(os.path.normpath(given)), roots) is None:
            raise UsageError(f"{what} {text} is outside the configured directories")
        candidates = [given]
    else:
        candidates = [root / given for root in roots]
    for candidate in candidates:
        if not os.path.lexists(candidate):
            continue
        resolved = candidate.resolve()
        if _under(resolved, roots) is None:
            raise UsageError(f"{what} {text} leads outside the configured directories "
                             "(a symbolic link)")
        return resolved
    raise UsageError(f"{what} {text} does not exist in the configured directories")


def _check_inside(paths: Iterator[Path], roots: Sequence[Path], what: str) -> None:
    for count, path in enumerate(paths):
        if count >= _MAX_DATA_FILES:
            raise UsageError(f"{what} holds more than {_MAX_DATA_FILES} files; pick a smaller "
                             "directory or one file")
        if _under(path.resolve(), roots) is None:
            raise UsageError(f"{what} holds {path.name}, a link leading outside the configured "
                             "directories")


def _walk_files(directory: Path) -> Iterator[Path]:
    for top, dirs, files in os.walk(directory, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for name in files:
            yield Path(top) / name
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):
                yield Path(top) / name


def confine_model(text: Any, version: Any, roots: Sequence[Path]) -> Path:
    """A model path inside the model roots whose served artifact is inside them too."""
    from modelcaliper.server.runtimes import resolve_artifact

    path = confine(text, roots, "model")
    try:
        _, artifact, _ = resolve_artifact(path, None if version in (None, "") else str(version))
    except OSError as exc:
        raise DataError(f"model {text} cannot be read: {exc.strerror or exc}") from None
    if _under(artifact.resolve(), roots) is None:
        raise UsageError(f"model {text} leads outside the configured directories "
                         "(a symbolic link)")
    if artifact.is_dir():
        _check_inside(_walk_files(artifact), roots, f"model {text}")
    return path


def confine_data(text: Any, roots: Sequence[Path]) -> Path:
    """A dataset file or directory inside the data roots, every file it holds inside too."""
    if isinstance(text, str) and any(ch in text for ch in "*?["):
        raise UsageError(f"data {text!r}: pick a file or a directory (patterns are for the "
                         "command line)")
    path = confine(text, roots, "data")
    if path.is_dir():
        _check_inside(_walk_files(path), roots, f"data {text}")
    return path


# ---------------------------------------------------------------------- discovery


def _entries(root: Path) -> Iterator[tuple[Path, int]]:
    """Directories under ``root`` (itself first), not hidden, not links, to ``_MAX_DEPTH``."""
    pending = [(root, 0)]
    while pending:
        directory, depth = pending.pop(0)
        yield directory, depth
        if depth >= _MAX_DEPTH:
            continue
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        pending.extend((Path(c.path), depth + 1) for c in children
                       if c.is_dir(follow_symlinks=False) and not c.name.startswith("."))


def _listed(path: Path, roots: Sequence[Path]) -> bool:
    """Inside the roots once links are resolved."""
    try:
        return _under(path.resolve(), roots) is not None
    except OSError:
        return False


def discover_models(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """Models under ``roots``: path, name shown, kind, versions (for a model base path)."""
    from modelcaliper.server.runtimes import artifact_in, versions_in

    found: list[dict[str, Any]] = []
    for root in roots:
        skip: list[Path] = []
        for directory, _depth in _entries(root):
            if len(found) >= MAX_LISTED:
                return found
            if any(directory.is_relative_to(s) for s in skip):
                continue
            held = artifact_in(directory) if directory != root else None
            versions = versions_in(directory) if held is None else {}
            if held is not None or versions:
                skip.append(directory)
                kind = held[0] if held else versions[max(versions)][0]
                found.append({"path": str(directory), "name": _shown(directory, root),
                              "kind": kind, "versions": [str(v) for v in sorted(versions)]})
                continue
            try:
                files = sorted(e.name for e in os.scandir(directory)
                               if e.name.lower().endswith(".onnx") and not e.name.startswith("."))
            except OSError:
                continue
            for name in files:
                path = directory / name
                if path.is_file() and _listed(path, roots):
                    found.append({"path": str(path), "name": _shown(path, root),
                                  "kind": "onnx", "versions": []})
    return found[:MAX_LISTED]


def _data_format(name: str) -> str | None:
    from modelcaliper.workload.datasets import detect_format

    if name.startswith((".", "_")):
        return None
    try:
        return detect_format(name)
    except DataError:
        return None


def discover_datasets(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """Datasets under ``roots``: files the loader reads, and directories of one kind of file."""
    found: list[dict[str, Any]] = []
    for root in roots:
        for directory, _depth in _entries(root):
            try:
                names = sorted(e.name for e in os.scandir(directory) if e.is_file())
            except OSError:
                continue
            files = [(n, f) for n in names if (f := _data_format(n)) is not None
                     and _listed(directory / n, roots)]
            formats = {f for _, f in files}
            if directory != root and len(files) > 1 and len(formats) == 1:
                found.append({"path": str(directory), "name": _shown(directory, root) + "/",
                              "format": formats.pop(), "files": len(files)})
            for name, fmt in files:
                found.append({"path": str(directory / name),
                              "name": _shown(directory / name, root), "format": fmt,
                              "files": 1})
            if len(found) >= MAX_LISTED:
                return found[:MAX_LISTED]
    return found


def _shown(path: Path, root: Path) -> str:
    return f"{root.name}/{path.relative_to(root)}" if path != root else root.name


# ---------------------------------------------------------------------- the form's values


def _check_types(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with their JSON types checked; empty values dropped (a field left blank)."""
    given: dict[str, Any] = {}
    for key, value in fields.items():
        kind = FIELDS.get(key)
        if kind is None:
            known = ", ".join(FIELDS)
            raise UsageError(f"unknown field '{key}' in {FORM_SOURCE}; the fields are {known}")
        if kind == _LIST:
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, str) for item in items):
                raise UsageError(f"field '{key}' must be text or a list of texts")
            items = [item for item in items if item.strip()]
            if items:
                given[key] = items
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (isinstance(value, str) or (kind == _NUMBER and number)):
            raise UsageError(f"field '{key}' must be {'a number' if kind == _NUMBER else 'text'}"
                             f", got {value!r}")
        if not isinstance(value, str) or value.strip():
            given[key] = value.strip() if isinstance(value, str) else value
    return given


def build_form_spec(fields: Any, settings: NewRunSettings) -> Any:
    """The ``RunSpec`` of the form's ``fields`` (a JSON object), stored in the UI's database."""
    from modelcaliper.cli.run import build_run_parser
    from modelcaliper.config import apply_options, build_spec, option_table

    if not isinstance(fields, dict):
        raise UsageError("the request body must be a JSON object of the form's fields")
    given = _check_types(fields)
    if "model" not in given:
        raise UsageError("pick a model")
    model = confine_model(given["model"], given.get("model_version"), settings.models_dirs)
    given["model_path"] = str(model)
    del given["model"]
    if "data" in given:
        if not settings.data_dirs:
            raise UsageError("datasets are off: start caliper ui with --data-dir DIR")
        given["data"] = str(confine_data(given["data"], settings.data_dirs))
    parser = build_run_parser()
    table = option_table(parser)
    args = parser.parse_args([])
    apply_options(args, {k: v for k, v in given.items() if v is not None}, table,
                  source=FORM_SOURCE)
    args.runs_dir = str(settings.database.parent)
    args.db = str(settings.database)
    args.quiet = True
    return build_spec(args, table)

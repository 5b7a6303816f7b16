"""One run's folder on disk, ``runs/<run_id>/``: every artifact of the run, each written atomically.

    runs/20261127-041500-ranker-3fa9c1/
      status.json              {status, reason, updated_at}: running, then completed,
                               interrupted or failed
      summary.json             the "modelcaliper.run/1" summary (load/summary.py)
      spec.json                the full merged spec, seeds included
      environment.json         host facts, library versions, seeds (store/environment.py)
      histograms/<series>.hist Histogram.to_bytes() of every series with samples: latency,
                               latency_ok, query_latency and each phase
      histograms/latency.hlog  the per-second latency histograms, HdrHistogram interval log
      intervals.json           {interval_s, rows: [{start_s, count, ok, errors, timeouts,
                               p50_ms, p90_ms, p99_ms, p999_ms, lag_p99_ms, lag_max_ms}]}
                               (lag: the schedule lag of the sends due in that interval;
                               absent in runs stored before it was recorded)
      server_metrics.json      {before, after, diff} scrapes of the target's metrics
      requests.parquet         every request record (queries.parquet with fan-out)
      logs/                    server logs
      profile/                 reserved for runtime profiles

Every file is written to a hidden temporary file in the same directory, flushed to disk and
renamed over its name, so a reader (the web UI while a run writes) sees the old file or the
new one, never half of one. Readers are module functions taking a folder (path or RunFolder).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError, UsageError
from modelcaliper.stats.histogram import Histogram
from modelcaliper.stats.intervals import IntervalSeries
from modelcaliper.store._files import atomic_path, atomic_write, dumps_json, plain

__all__ = ["STATUSES", "RunFolder", "atomic_write", "check_run_id", "indexable_summary",
           "list_run_folders", "load_environment", "load_histograms", "load_intervals",
           "load_queries", "load_requests", "load_server_metrics", "load_spec", "load_status",
           "load_summary", "metrics_diff", "new_run_id"]

STATUSES = ("running", "completed", "interrupted", "failed")
"""A run's state: ``running`` until ``finish`` records how it ended."""

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")
_SERIES = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_INTERVAL_PERCENTILES = (("p50_ms", "p50_us"), ("p90_ms", "p90_us"), ("p99_ms", "p99_us"),
                         ("p999_ms", "p99_9_us"), ("lag_p99_ms", "lag_p99_us"),
                         ("lag_max_ms", "lag_max_us"))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(model: str, now: datetime | None = None) -> str:
    """``20261127-041500-<model>-<6 hex>``: sorts by start time (UTC), readable, unique."""
    when = now or datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    slug = re.sub(r"[^a-z0-9._-]+", "-", str(model).lower()).strip("-._")[:40] or "model"
    return f"{when:%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(3)}"


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _RUN_ID.fullmatch(name):
        raise UsageError(f"{what} {name!r} must be 1-160 letters, digits, '.', '_' or '-' "
                         "and start with a letter or digit")
    return name


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is safe as one folder name (no separators, no '..'), else a UsageError."""
    return _check_name(run_id, "run id")


def metrics_diff(before: Any, after: Any) -> Any:
    """``after − before`` for every number in ``after`` (nested mappings alike); a series absent
    before counts from 0, as a Prometheus counter first seen during the run does."""
    if isinstance(after, Mapping):
        earlier = before if isinstance(before, Mapping) else {}
        out = {}
        for key, value in after.items():
            diff = metrics_diff(earlier.get(key), value)
            if diff is not None:
                out[key] = diff
        return out
    if isinstance(after, (int, float)) and not isinstance(after, bool):
        start = before if isinstance(before, (int, float)) and not isinstance(before, bool) else 0
        return after - start
    return None


# ---------------------------------------------------------------------- the writer


class RunFolder:
    """Creates ``<root>/<run_id>/`` and writes a run's artifacts into it, each atomically."""

    def __init__(self, root: str | Path = "runs", run_id: str | None = None, *,
                 model: str = "model") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id is None:
            for _ in range(16):  # a clash needs the same second, model and 24 random bits
                run_id = new_run_id(model)
                try:
                    (self.root / run_id).mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise UsageError(f"could not pick an unused run id under {self.root}")
        else:
            (self.root / check_run_id(run_id)).mkdir(exist_ok=True)
        self.run_id: str = run_id
        self.path = self.root / run_id
        if not (self.path / "status.json").exists():
            self.finish("running")

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder, for adding to it or reading it; DataError if there is none."""
        folder = Path(path)
        if not folder.is_dir():
            raise DataError(f"run folder {folder} does not exist")
        opened = cls.__new__(cls)
        opened.root, opened.run_id, opened.path = folder.parent, folder.name, folder
        return opened

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def parts_dir(self) -> Path:
        """Where the load engine writes its per-worker record parts (``records_dir``)."""
        return self.path / ".parts"

    @property
    def logs_dir(self) -> Path:
        """``logs/``, created on first use."""
        return self._subdir("logs")

    @property
    def profile_dir(self) -> Path:
        """``profile/`` (reserved for runtime op profiles), created on first use."""
        return self._subdir("profile")

    def _subdir(self, name: str) -> Path:
        directory = self.path / name
        directory.mkdir(exist_ok=True)
        return directory

    def _write_json(self, name: str, value: Any) -> Path:
        target = self.path / name
        atomic_write(target, dumps_json(value))
        return target

    def finish(self, status: str, reason: str | None = None) -> None:
        """Record how the run ended (``completed``, ``interrupted`` or ``failed``) and why."""
        if status not in STATUSES:
            raise UsageError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")
        self._write_json("status.json", {"status": status, "reason": reason,
                                         "updated_at": _now_iso()})

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """``summary.json``; the folder's run id wins over the summary's own."""
        return self._write_json("summary.json", {**summary, "run_id": self.run_id})

    def write_spec(self, spec: Any) -> Path:
        """``spec.json``: the merged spec (a mapping, or an object with to_dict/describe)."""
        return self._write_json("spec.json", plain(spec))

    def write_environment(self, environment: Mapping[str, Any]) -> Path:
        """``environment.json`` (see ``store.environment.collect_environment``)."""
        return self._write_json("environment.json", environment)

    def write_histograms(self, histograms: Mapping[str, Histogram]) -> list[str]:
        """``histograms/<series>.hist`` for every series with samples; the names written."""
        written = []
        for name, histogram in histograms.items():
            if not _SERIES.fullmatch(name):
                raise UsageError(f"histogram series {name!r} is not a usable file name")
            if histogram.count:
                atomic_write(self.path / "histograms" / f"{name}.hist", histogram.to_bytes())
                written.append(name)
        return written

    def write_intervals(self, series: IntervalSeries | Sequence[Mapping[str, Any]],
                        interval_s: float = 1.0) -> Path:
        """``intervals.json`` from an IntervalSeries, or rows already in the summary's form."""
        if isinstance(series, IntervalSeries):
            interval_s = series.interval_s
            rows = []
            for row in series.rows([50, 90, 99, 99.9]):
                out = {key: row[key] for key in ("start_s", "count", "ok", "errors", "timeouts")}
                for ms_key, us_key in _INTERVAL_PERCENTILES:
                    out[ms_key] = None if row[us_key] is None else row[us_key] / 1e3
                rows.append(out)
        else:
            rows = [dict(row) for row in series]
        return self._write_json("intervals.json", {"interval_s": interval_s, "rows": rows})

    def write_stats(self, stats: Any, started_at_s: float | None = None) -> None:
        """Histograms and intervals of a ``RunStats``; with its start time, the latency hlog."""
        self.write_histograms(stats.histograms)
        self.write_intervals(stats.intervals)
        if started_at_s is not None:
            from modelcaliper.load.summary import write_latency_hlog

            with atomic_path(self.path / "histograms" / "latency.hlog") as temporary:
                write_latency_hlog(stats, started_at_s, temporary)

    def write_server_metrics(self, before: Any, after: Any, diff: Any = None) -> Path:
        """``server_metrics.json``: both scrapes and their difference (computed when not given)."""
        if diff is None and before is not None and after is not None:
            diff = metrics_diff(before, after)
        return self._write_json("server_metrics.json",
                                {"before": before, "after": after, "diff": diff})

    def adopt_records(self, requests: Iterable[str | Path],
                      queries: Iterable[str | Path] = ()) -> None:
        """Move the engine's record parts in as ``requests.parquet`` (and ``queries.parquet``)."""
        _adopt([Path(p) for p in requests], self.path / "requests.parquet")
        _adopt([Path(p) for p in queries], self.path / "queries.parquet")
        with suppress(OSError):
            self.parts_dir.rmdir()  # only when empty

    def copy_log(self, source: str | Path, name: str | None = None) -> Path:
        """Copy a log file into ``logs/`` (under its own name unless ``name`` is given)."""
        origin = Path(source)
        target = self.logs_dir / _check_name(name or origin.name, "log name")
        with atomic_path(target) as temporary:
            shutil.copyfile(origin, temporary)
        return target

    def write_log(self, name: str, text: str | bytes) -> Path:
        """Write ``text`` as ``logs/<name>``."""
        target = self.logs_dir / _check_name(name, "log name")
        atomic_write(target, text.encode("utf-8", "replace") if isinstance(text, str) else text)
        return target


def _adopt(parts: list[Path], target: Path) -> None:
    """One Parquet file from the workers' parts: renamed when there is one, else concatenated."""
    parts = [p for p in parts if p.exists()]
    if not parts:
        return
    if len(parts) == 1:
        try:
            os.replace(parts[0], target)
            return
        except OSError:  # another file system: copy, then drop the part
            with atomic_path(target) as temporary:
                shutil.copyfile(parts[0], temporary)
            parts[0].unlink()
            return
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(str(p)) for p in parts]
    schema = pa.unify_schemas([f.schema_arrow for f in files])
    with atomic_path(target) as temporary:
        # One row group at a time, so memory stays bounded by one part's chunk.
        with pq.ParquetWriter(str(temporary), schema, compression="zstd") as writer:
            for part in files:
                for group in range(part.num_row_groups):
                    table = part.read_row_group(group)
                    writer.write_table(table if table.schema == schema else table.cast(schema))
    for part in parts:
        part.unlink()


# ---------------------------------------------------------------------- readers


def _path_of(folder: str | Path | RunFolder) -> Path:
    return folder.path if isinstance(folder, RunFolder) else Path(folder)


def _read_json(folder: str | Path | RunFolder, name: str, required: bool) -> Any:
    path = _path_of(folder) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise DataError(f"run folder {path.parent} has no {name}") from None
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"run folder {path.parent}: {name} is not valid JSON ({exc})") from None


def load_status(folder: str | Path | RunFolder) -> dict[str, Any]:
    """``{status, reason, updated_at}``; ``running`` means not finished (or its process died)."""
    status = _read_json(folder, "status.json", required=False)
    if status is None:
        return {"status": "running", "reason": None, "updated_at": None}
    return status


def load_summary(folder: str | Path | RunFolder) -> dict[str, Any]:
    """The run's summary; DataError if it was never written."""
    return _read_json(folder, "summary.json", required=True)


def indexable_summary(folder: str | Path | RunFolder, status: str | None = None) -> dict[str, Any]:
    """The folder's summary; a run that failed or stopped before writing one gets a stub of its
    id and start time (from the run id when it has one), so it can still be indexed."""
    path = _path_of(folder)
    stored = load_status(path)
    if (path / "summary.json").exists() or (status or stored["status"]) == "completed":
        return load_summary(path)
    started: str | None
    try:
        started = datetime.strptime(path.name[:15], "%Y%m%d-%H%M%S").isoformat() + "Z"
    except ValueError:
        started = stored.get("updated_at")
    return {"run_id": path.name, "started_at": started}


def load_spec(folder: str | Path | RunFolder) -> dict[str, Any] | None:
    """The run's merged spec, or None."""
    return _read_json(folder, "spec.json", required=False)


def load_environment(folder: str | Path | RunFolder) -> dict[str, Any] | None:
    """The run's environment facts, or None."""
    return _read_json(folder, "environment.json", required=False)


def load_intervals(folder: str | Path | RunFolder) -> dict[str, Any] | None:
    """``{interval_s, rows}``, or None."""
    return _read_json(folder, "intervals.json", required=False)


def load_server_metrics(folder: str | Path | RunFolder) -> dict[str, Any] | None:
    """``{before, after, diff}``, or None when the target's metrics were not scraped."""
    return _read_json(folder, "server_metrics.json", required=False)


def load_histograms(folder: str | Path | RunFolder) -> dict[str, Histogram]:
    """Every stored histogram by series name; a series missing had no samples."""
    directory = _path_of(folder) / "histograms"
    if not directory.is_dir():
        return {}
    out = {}
    for path in sorted(directory.glob("*.hist")):
        if not path.name.startswith("."):
            out[path.stem] = Histogram.from_bytes(path.read_bytes())
    return out


def _load_table(folder: str | Path | RunFolder, name: str,
                columns: Sequence[str] | None) -> Any:
    path = _path_of(folder) / name
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    return pq.read_table(str(path), columns=list(columns) if columns is not None else None)


def load_requests(folder: str | Path | RunFolder, columns: Sequence[str] | None = None) -> Any:
    """The request records as a pyarrow table, or None when none were kept."""
    return _load_table(folder, "requests.parquet", columns)


def load_queries(folder: str | Path | RunFolder, columns: Sequence[str] | None = None) -> Any:
    """The query records (fan-out runs) as a pyarrow table, or None."""
    return _load_table(folder, "queries.parquet", columns)


def list_run_folders(root: str | Path = "runs") -> list[Path]:
    """Run folders under ``root`` (those with a status or summary), oldest run id first."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir()
                  if p.is_dir() and _RUN_ID.fullmatch(p.name)
                  and ((p / "status.json").exists() or (p / "summary.json").exists()))

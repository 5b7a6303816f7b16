"""Datasets on disk as a ``Source``: Parquet, CSV, JSON lines or TFRecord files of Examples.

A source is a file, a directory of files (hive ``key=value`` folders become columns), a glob,
or a ``pyarrow.dataset.Dataset``. ``Source.scan`` streams it as Arrow tables in a stable order
(never more than one batch in memory); Parquet sources also expose their row groups
(``Source.row_groups``) so that a selection can read only the row groups holding chosen rows.

``read_columns`` is the short path used by ``caliper payload`` and ``caliper run``: up to
``limit`` rows, the first ones or a seeded uniform sample, as named numpy columns. Columns
become numpy arrays by ``to_numpy_columns``: equal-length lists become an extra dimension,
lists of different lengths an object array of 1-D arrays (padded or refused later, against
the input they feed), strings object arrays of ``str``; nulls stay visible (``None`` or NaN).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from modelcaliper.errors import DataError

__all__ = [
    "FORMATS",
    "RowGroup",
    "Source",
    "detect_format",
    "open_source",
    "read_columns",
    "to_numpy",
    "to_numpy_columns",
]

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfr": "tfrecord",
}
"""File extensions (before any ``.gz``/``.bz2``/``.zst``) and the format each one means."""

_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
_WHOLE_ROW_GROUP = ds.ParquetFragmentScanOptions(pre_buffer=False)
SCAN_BATCH_ROWS = 65_536
"""Rows per batch when a source is streamed."""


def detect_format(path: str | Path) -> str:
    """The dataset format of one file from its extension: parquet, csv, json or tfrecord."""
    name = Path(path).name.lower()
    compressed = ""
    for suffix in _COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name, compressed = name[: -len(suffix)], suffix
    fmt = FORMATS.get(Path(name).suffix)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"cannot tell the format of {path}: use one of the extensions {known}")
    if fmt == "tfrecord" and compressed not in ("", ".gz"):
        raise DataError(f"{path}: TFRecord files can be read plain or gzipped, not {compressed}")
    return fmt


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group: where its rows start in the source and how to read it."""

    start: int
    num_rows: int
    fragment: Any  # a pyarrow ParquetFileFragment restricted to this row group
    schema: pa.Schema

    def read(self, columns: Sequence[str]) -> pa.Table:
        """The row group's ``columns`` (partition columns filled in)."""
        # One whole row group per call: pre-buffering would only hold a second copy of it.
        return self.fragment.to_table(schema=self.schema, columns=list(columns),
                                      fragment_scan_options=_WHOLE_ROW_GROUP)


class Source:
    """A readable dataset: its label for messages, format, files and Arrow schema."""

    def __init__(self, label: str, fmt: str, files: Sequence[str], dataset: Any) -> None:
        self.label = label
        self.format = fmt
        self.files = tuple(files)
        self._dataset = dataset  # a pyarrow Dataset, or TFRecordFiles
        self.schema: pa.Schema = dataset.schema

    @property
    def skipped_columns(self) -> tuple[str, ...]:
        """TFRecord features first seen after the records that decided the schema."""
        return tuple(sorted(getattr(self._dataset, "skipped_features", ())))

    def scan(self, columns: Sequence[str] | None = None,
             batch_rows: int = SCAN_BATCH_ROWS) -> Iterator[pa.Table]:
        """The rows as tables in a stable order, holding ``columns`` (all when None)."""
        names = list(self.schema.names if columns is None else columns)
        with self.errors():
            if self.format == "tfrecord":
                # Parsed Examples are Python objects: keep TFRecord batches small.
                yield from self._dataset.tables(names, batch_rows=min(batch_rows, 4096))
                return
            for batch in self._dataset.to_batches(columns=names, batch_size=batch_rows,
                                                  use_threads=False):
                if batch.num_rows:
                    yield pa.Table.from_batches([batch])

    def head(self, limit: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The first ``limit`` rows."""
        parts: list[pa.Table] = []
        have = 0
        for table in self.scan(columns, batch_rows=min(limit, SCAN_BATCH_ROWS)):
            parts.append(table.slice(0, limit - have))
            have += parts[-1].num_rows
            if have >= limit:
                break
        return self._concat(parts, columns)

    def _concat(self, parts: list[pa.Table], columns: Sequence[str] | None) -> pa.Table:
        if parts:
            return pa.concat_tables(parts)
        names = self.schema.names if columns is None else list(columns)
        return pa.schema([self.schema.field(n) for n in names]).empty_table()

    def row_groups(self, filter: ds.Expression | None = None) -> list[RowGroup] | None:
        """Every Parquet row group in scan order (those ``filter`` may match), or None.

        Row groups that the column statistics prove cannot match ``filter`` are left out;
        ``start`` still counts the rows of every row group, so positions stay the same.
        """
        if self.format != "parquet" or not isinstance(self._dataset, ds.FileSystemDataset):
            return None
        groups: list[RowGroup] = []
        start = 0
        with self.errors():
            for fragment in self._dataset.get_fragments():
                fragment.ensure_complete_metadata()
                wanted = None
                if filter is not None:
                    wanted = _row_groups_matching(fragment, filter)
                for piece, info in zip(fragment.split_by_row_group(), fragment.row_groups,
                                       strict=True):
                    if wanted is None or info.id in wanted:
                        groups.append(RowGroup(start, info.num_rows, piece, self.schema))
                    start += info.num_rows
        return groups

    def errors(self) -> _ReadErrors:
        """A context that turns Arrow and OS read errors into one-line DataErrors."""
        return _ReadErrors(self.label, self.format)


def _row_groups_matching(fragment: Any, filter: ds.Expression) -> set[int] | None:
    """Ids of the row groups whose statistics allow ``filter``; None when they cannot tell."""
    try:
        subset = fragment.subset(filter=filter)
    except pa.ArrowInvalid:
        return None  # the filter names a column the file lacks, e.g. a hive partition key
    return set() if subset is None else {info.id for info in subset.row_groups}


class _ReadErrors:
    def __init__(self, label: str, fmt: str) -> None:
        self.label = label
        self.format = fmt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, DataError):
            return False
        if isinstance(exc, (pa.ArrowException, OSError)):
            text = str(exc).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            raise DataError(f"cannot read {self.label} as {self.format}: {first_line}") from None
        return False


def _resolve(source: str | Path) -> tuple[list[str], str, str | None]:
    """The files a source names, their common format, and the directory it names if any."""
    text = str(source)
    base = None
    if any(ch in text for ch in "*?["):
        files = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"no files match {text}")
    elif Path(text).is_dir():
        files = sorted(
            str(p)
            for p in Path(text).rglob("*")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(text).parts)
        )
        if not files:
            raise DataError(f"directory {text} holds no data files")
        base = text
    elif Path(text).is_file():
        files = [text]
    else:
        raise DataError(f"data file {text} does not exist")
    formats = {detect_format(f) for f in files}
    if len(formats) > 1:
        raise DataError(
            f"{text} mixes formats ({', '.join(sorted(formats))}); point at one kind of file"
        )
    return files, formats.pop(), base


def open_source(source: str | Path | ds.Dataset | Source, *, schema_records: int | None = None
                ) -> Source:
    """Open a file, directory, glob or pyarrow dataset for reading (its schema only, no rows)."""
    if isinstance(source, Source):
        return source
    if isinstance(source, ds.Dataset):
        fmt = "dataset"
        files: list[str] = []
        if isinstance(source, ds.FileSystemDataset):
            files = list(source.files)
            if isinstance(source.format, ds.ParquetFileFormat):
                fmt = "parquet"
        return Source(f"the {fmt} dataset", fmt, files, source)
    files, fmt, base = _resolve(source)
    label = str(source)
    if fmt == "tfrecord":
        from modelcaliper.workload.tfrecord import DEFAULT_SCHEMA_RECORDS, TFRecordFiles

        tf_files = TFRecordFiles(files, schema_records=schema_records or DEFAULT_SCHEMA_RECORDS)
        if not tf_files.schema.names:
            raise DataError(f"{label} has no rows (no Example with a feature)")
        return Source(label, fmt, files, tf_files)
    with _ReadErrors(label, fmt):
        if base is not None:
            dataset = ds.dataset(files, format=fmt, partitioning="hive", partition_base_dir=base)
        else:
            dataset = ds.dataset(files, format=fmt)
    return Source(label, fmt, files, dataset)


def read_columns(
    source: str | Path | ds.Dataset, *, limit: int, sample_seed: int | None = None
) -> dict[str, np.ndarray]:
    """Up to ``limit`` rows of ``source`` as named columns: the first rows, or a seeded sample."""
    if limit < 1:
        raise DataError(f"the number of rows to read must be ≥ 1, got {limit}")
    if sample_seed is not None:
        from modelcaliper.workload.selection import Selection, select_rows

        return select_rows(source, Selection(sample=limit, seed=sample_seed)).columns()
    opened = open_source(source)
    table = opened.head(limit)
    if table.num_rows == 0:
        raise DataError(f"{opened.label} has no rows")
    return to_numpy_columns(table)


def to_numpy_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Every column of ``table`` as a numpy array (see the module docstring)."""
    return {name: to_numpy(name, table.column(name)) for name in table.column_names}


def to_numpy(name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """One Arrow column as a numpy array; lists become an extra dimension."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _lists_to_numpy(name, array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
    return array.to_numpy(zero_copy_only=False)


def _lists_to_numpy(name: str, array: pa.Array) -> np.ndarray:
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if array.null_count == 0 and (not lengths.size or (lengths == lengths[0]).all()):
        width = int(lengths[0]) if lengths.size else 0
        inner = to_numpy(name, pc.list_flatten(array))
        return inner.reshape(len(array), width, *inner.shape[1:])
    # Ragged (or partly missing) lists: one 1-D array per row, None for a missing list.
    inner = to_numpy(name, pc.list_flatten(array))
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    counts = np.where(valid, np.nan_to_num(lengths, nan=0), 0).astype(np.int64)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    out = np.empty(len(array), dtype=object)
    for row in range(len(array)):
        out[row] = inner[bounds[row]:bounds[row + 1]] if valid[row] else None
    return out

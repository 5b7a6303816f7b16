"""Read rows of a dataset into named numpy columns: Parquet, CSV or JSON lines, via pyarrow.

``read_columns`` streams the source with a ``pyarrow.dataset`` scanner and never loads more
than it keeps (the first ``limit`` rows, or a seeded sample of ``limit`` rows plus one batch).
A source is a file, a directory of files, or a glob. List columns become fixed-length vectors
(a 2-D array); strings become object arrays of ``str``; nulls stay visible (``None`` or NaN)
so that the request builder can report them against the input they would feed.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from modelcaliper.errors import DataError

__all__ = ["FORMATS", "detect_format", "read_columns"]

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
"""File extensions (before any ``.gz``/``.bz2``/``.zst``) and the format each one means."""

_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")


def detect_format(path: str | Path) -> str:
    """The dataset format of one file from its extension: ``parquet``, ``csv`` or ``json``."""
    name = Path(path).name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    fmt = FORMATS.get(Path(name).suffix)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"cannot tell the format of {path}: use one of the extensions {known}")
    return fmt


def _resolve(source: str | Path) -> tuple[list[str], str]:
    """The files a source names and their common format."""
    text = str(source)
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
    elif Path(text).is_file():
        files = [text]
    else:
        raise DataError(f"data file {text} does not exist")
    formats = {detect_format(f) for f in files}
    if len(formats) > 1:
        raise DataError(
            f"{text} mixes formats ({', '.join(sorted(formats))}); point at one kind of file"
        )
    return files, formats.pop()


def read_columns(
    source: str | Path, *, limit: int, sample_seed: int | None = None
) -> dict[str, np.ndarray]:
    """Up to ``limit`` rows of ``source`` as named columns: the first rows, or a seeded sample."""
    if limit < 1:
        raise DataError(f"the number of rows to read must be ≥ 1, got {limit}")
    files, fmt = _resolve(source)
    try:
        dataset = ds.dataset(files, format=fmt)
        if sample_seed is None:
            table = dataset.head(limit)
        else:
            table = _sample(dataset, limit, sample_seed)
    except (pa.ArrowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {source} as {fmt}: {first_line}") from None
    if table.num_rows == 0:
        raise DataError(f"{source} has no rows")
    return {name: _to_numpy(name, table.column(name)) for name in table.column_names}


def _sample(dataset: ds.Dataset, limit: int, seed: int) -> pa.Table:
    """A uniform sample of ``limit`` rows in file order, streaming the dataset once.

    Every row gets a random key and the rows with the ``limit`` smallest keys are kept (a
    bottom-k sample, which is uniform without replacement); keys are drawn batch by batch in
    scan order, which a single-threaded scan keeps stable, so one seed gives one sample.
    """
    rng = np.random.default_rng(seed)
    kept = dataset.schema.empty_table()
    kept_keys = np.empty(0)
    kept_positions = np.empty(0, dtype=np.int64)
    offset = 0
    for batch in dataset.to_batches(use_threads=False):
        if batch.num_rows == 0:
            continue
        kept = pa.concat_tables([kept, pa.Table.from_batches([batch], schema=dataset.schema)])
        kept_keys = np.concatenate([kept_keys, rng.random(batch.num_rows)])
        kept_positions = np.concatenate(
            [kept_positions, np.arange(offset, offset + batch.num_rows, dtype=np.int64)]
        )
        offset += batch.num_rows
        if kept.num_rows > limit:
            best = np.argpartition(kept_keys, limit - 1)[:limit]
            kept, kept_keys, kept_positions = kept.take(best), kept_keys[best], kept_positions[best]
    return kept.take(np.argsort(kept_positions, kind="stable"))


def _to_numpy(name: str, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """One Arrow column as a numpy array; lists become an extra dimension."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _lists_to_numpy(name, array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=object)
    return array.to_numpy(zero_copy_only=False)


def _lists_to_numpy(name: str, array: pa.Array) -> np.ndarray:
    if array.null_count:
        raise DataError(
            f"column '{name}' has {array.null_count} missing lists; every row needs a value"
        )
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths != lengths[0]).any():
        raise DataError(
            f"column '{name}' holds lists of different lengths "
            f"({lengths.min()} to {lengths.max()}); "
            "every row needs the same length"
        )
    width = int(lengths[0]) if lengths.size else 0
    inner = _to_numpy(name, pc.list_flatten(array))
    return inner.reshape(len(array), width, *inner.shape[1:])

"""TFRecord files of ``tf.train.Example`` records, read without TensorFlow.

A TFRecord file is a run of records, each framed as::

    uint64 length (little-endian)
    uint32 masked CRC32C of those 8 bytes
    data (length bytes)
    uint32 masked CRC32C of the data

Both checksums are verified; a mismatch is a ``DataError`` naming the file and the record
number. Records are read one at a time through a buffered file, so memory holds one batch of
parsed records, never the file. ``.gz`` files are read through ``gzip``.

Each record is parsed as a ``tf.train.Example`` straight from the protobuf wire format::

    Example { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   # entries: key = 1, value = 2
    Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                      Int64List int64_list = 3; } }

Every feature becomes an Arrow column. The first ``schema_records`` records decide each
column's type: ``bytes_list`` → binary, ``float_list`` → float32, ``int64_list`` → int64, as
a plain column when no record holds more than one value and as a list column otherwise (list
columns become vectors later). A record without a feature gives a null.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from modelcaliper.errors import DataError
from modelcaliper.workload.crc32c import crc32c

__all__ = [
    "DEFAULT_SCHEMA_RECORDS",
    "MAX_RECORD_BYTES",
    "TFRecordFiles",
    "crc32c",
    "iter_records",
    "masked_crc32c",
    "parse_example",
]

MAX_RECORD_BYTES = 256 * 1024 * 1024
"""Largest record length accepted; a bigger declared length means a corrupt file."""

DEFAULT_SCHEMA_RECORDS = 1024
"""Records read to decide the type and list-ness of each feature."""

BYTES_LIST, FLOAT_LIST, INT64_LIST = 1, 2, 3
_KIND_NAMES = {BYTES_LIST: "bytes_list", FLOAT_LIST: "float_list", INT64_LIST: "int64_list"}
_ARROW_TYPES = {BYTES_LIST: pa.binary(), FLOAT_LIST: pa.float32(), INT64_LIST: pa.int64()}
_ABSENT: tuple[int, Any] = (0, None)

def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The masked CRC-32C that TFRecord framing stores (rotated right 15 bits, plus a constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------- framing


def _open(path: str) -> IO[bytes]:
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)  # noqa: SIM115


def iter_records(path: str | Path, *, verify: bool = True) -> Iterator[bytes]:
    """The data of each record of the TFRecord file ``path``, checksums verified, in order."""
    name = str(path)
    try:
        handle = _open(name)
    except OSError as exc:
        raise DataError(f"cannot open TFRecord file {name}: {exc.strerror or exc}") from None
    with handle:
        number = 0
        while True:
            try:
                header = handle.read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise DataError(f"{name} record {number}: file ends inside the record header; "
                                    "the file is truncated")
                (length,) = struct.unpack_from("<Q", header)
                (length_crc,) = struct.unpack_from("<I", header, 8)
                if verify and masked_crc32c(header[:8]) != length_crc:
                    raise DataError(f"{name} record {number}: length checksum mismatch; "
                                    "the file is corrupt or not a TFRecord file")
                if length > MAX_RECORD_BYTES:
                    raise DataError(f"{name} record {number}: declares {length} bytes, over the "
                                    f"{MAX_RECORD_BYTES}-byte limit; the file is corrupt")
                data = handle.read(length)
                footer = handle.read(4)
            except (OSError, EOFError) as exc:
                raise DataError(f"{name} record {number}: cannot read: {exc}") from None
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{name} record {number}: file ends inside the record data; "
                                "the file is truncated")
            if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise DataError(f"{name} record {number}: data checksum mismatch; "
                                "the file is corrupt")
            yield data
            number += 1


# ---------------------------------------------------------------------------------- Example


class _Malformed(Exception):
    """A record that does not follow the Example wire format (message without context)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _Malformed("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, Any, int]]:
    """(field number, wire type, value or payload start, payload end) of each field."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
            yield number, 0, value, pos
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Malformed(f"field {number} claims {length} bytes past its message's end")
            yield number, 2, pos, pos + length
            pos += length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > end:
                raise _Malformed(f"field {number} is cut short")
            yield number, wire_type, pos, pos + size
            pos += size
        else:
            raise _Malformed(f"field {number} has unsupported wire type {wire_type}")
    if pos != end:
        raise _Malformed("the last field runs past the end of its message")


def _packed_varints(buf: bytes, start: int, end: int) -> np.ndarray:
    """Packed int64 varints as an int64 array (vectorised: bytes below 0x80 end a value)."""
    raw = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    if raw.size == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        raise _Malformed("packed int64 values end inside a varint")
    starts = np.concatenate(([0], ends[:-1] + 1))
    if int((ends - starts).max()) >= 10:
        raise _Malformed("a varint is longer than 10 bytes")
    within = np.arange(raw.size) - np.repeat(starts, ends - starts + 1)
    parts = (raw & 0x7F).astype(np.uint64) << (within.astype(np.uint64) * np.uint64(7))
    return np.add.reduceat(parts, starts).view(np.int64)


def _feature(buf: bytes, start: int, end: int) -> tuple[int, Any]:
    """(kind, values) of one Feature: a list of bytes or a float32 / int64 array."""
    kind: int = 0
    values: Any = None
    for number, wire_type, a, b in _fields(buf, start, end):
        if wire_type != 2 or number not in _KIND_NAMES:
            continue
        kind = number
        if number == BYTES_LIST:
            values = [bytes(buf[x:y]) for n, w, x, y in _fields(buf, a, b) if n == 1 and w == 2]
            continue
        dtype = np.float32 if number == FLOAT_LIST else np.int64
        packed: list[np.ndarray] = []
        loose: list[Any] = []  # unpacked values, flushed in order before the next packed run
        for n, w, x, y in _fields(buf, a, b):
            if n != 1:
                continue
            if w == 2 and loose:
                packed.append(np.asarray(loose, dtype=dtype))
                loose = []
            if number == FLOAT_LIST and w == 2:
                if (y - x) % 4:
                    raise _Malformed("packed floats are not a whole number of 4-byte values")
                packed.append(np.frombuffer(buf, dtype="<f4", count=(y - x) // 4, offset=x))
            elif number == FLOAT_LIST and w == 5:
                loose.append(struct.unpack_from("<f", buf, x)[0])
            elif number == INT64_LIST and w == 2:
                packed.append(_packed_varints(buf, x, y))
            elif number == INT64_LIST and w == 0:
                loose.append(x - (1 << 64) if x >= 1 << 63 else x)
        if loose:
            packed.append(np.asarray(loose, dtype=dtype))
        values = packed[0] if len(packed) == 1 else np.concatenate(packed or [np.empty(0, dtype)])
    return kind, values


def _length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A length varint at ``pos`` (one byte in the common case) and where its payload starts."""
    if pos >= end:
        raise _Malformed("a field is cut short")
    length = buf[pos]
    if length < 0x80:
        return length, pos + 1
    return _varint(buf, pos)


def _skip(buf: bytes, pos: int, end: int) -> int:
    """The position after the field that starts at ``pos``."""
    for _, _, _, after in _fields_once(buf, pos, end):
        return after
    return end


def _fields_once(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, Any, int]]:
    key, pos = _varint(buf, pos)
    wire_type = key & 7
    if wire_type == 0:
        _, pos = _varint(buf, pos)
        yield key >> 3, 0, None, pos
    elif wire_type == 2:
        length, pos = _length(buf, pos, end)
        if pos + length > end:
            raise _Malformed(f"field {key >> 3} runs past its message's end")
        yield key >> 3, 2, pos, pos + length
    elif wire_type in (1, 5):
        size = 8 if wire_type == 1 else 4
        if pos + size > end:
            raise _Malformed(f"field {key >> 3} is cut short")
        yield key >> 3, wire_type, pos, pos + size
    else:
        raise _Malformed(f"field {key >> 3} has unsupported wire type {wire_type}")


def _fast_values(kind: int, buf: bytes, start: int, end: int) -> Any:
    """The values of a list message written the usual way (packed, one run), else None."""
    if start == end:
        return [] if kind == BYTES_LIST else ()
    if buf[start] != 0x0A:  # field 1, length-delimited
        return None
    if kind == BYTES_LIST:
        values: list[bytes] = []
        pos = start
        while pos < end:
            if buf[pos] != 0x0A:
                return None
            length, pos = _length(buf, pos + 1, end)
            if pos + length > end:
                raise _Malformed("a bytes value runs past its list's end")
            values.append(buf[pos:pos + length])
            pos += length
        return values
    length, pos = _length(buf, start + 1, end)
    if pos + length != end:
        return None
    if kind == FLOAT_LIST:
        if length % 4:
            raise _Malformed("packed floats are not a whole number of 4-byte values")
        count = length // 4
        if count <= 16:  # a tuple of Python floats is cheaper than a tiny array
            return struct.unpack_from(f"<{count}f", buf, pos)
        return np.frombuffer(buf, dtype="<f4", count=count, offset=pos)
    if length <= 16:
        numbers: list[int] = []
        while pos < end:
            value, pos = _varint(buf, pos)
            numbers.append(value - (1 << 64) if value >= 1 << 63 else value)
        return tuple(numbers)
    return _packed_varints(buf, pos, end)


def _feature_at(buf: bytes, start: int, end: int) -> tuple[int, Any]:
    """(kind, values) of the Feature in ``buf[start:end]``."""
    if start < end and buf[start] in (0x0A, 0x12, 0x1A):
        kind = buf[start] >> 3
        length, pos = _length(buf, start + 1, end)
        if pos + length == end:
            values = _fast_values(kind, buf, pos, end)
            if values is not None:
                return kind, values
    return _feature(buf, start, end)


def parse_example(record: bytes) -> dict[str, tuple[int, Any]]:
    """The features of one serialized ``tf.train.Example``: name → (kind, values).

    ``kind`` is 1 (bytes_list: a list of bytes), 2 (float_list: floats) or 3 (int64_list:
    integers), the values a sequence (a tuple or numpy array for numbers); a feature with no
    kind set has kind 0 and values ``None``. Raises ``ValueError`` when the record is not an
    Example.
    """
    features: dict[str, tuple[int, Any]] = {}
    try:
        for number, wire_type, a, b in _fields(record, 0, len(record)):
            if number == 1 and wire_type == 2:
                _parse_features(record, a, b, features)
    except (_Malformed, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(str(exc)) from None
    return features


def _parse_features(buf: bytes, pos: int, end: int, out: dict[str, tuple[int, Any]]) -> None:
    """Add the entries of the ``Features`` message in ``buf[pos:end]`` to ``out``."""
    # The hot loop of TFRecord reading, written out by hand: one map entry per feature, each
    # a key string (field 1) and a Feature (field 2), nearly always with one-byte lengths.
    while pos < end:
        if buf[pos] != 0x0A:
            pos = _skip(buf, pos, end)
            continue
        length, pos = _length(buf, pos + 1, end)
        entry_end = pos + length
        if entry_end > end:
            raise _Malformed("a feature entry runs past its message's end")
        name = ""
        value: tuple[int, Any] = (0, None)
        while pos < entry_end:
            key = buf[pos]
            if key not in (0x0A, 0x12):
                pos = _skip(buf, pos, entry_end)
                continue
            length, pos = _length(buf, pos + 1, entry_end)
            after = pos + length
            if after > entry_end:
                raise _Malformed("a feature's key or value runs past its entry")
            if key == 0x0A:
                name = buf[pos:after].decode("utf-8")
            else:
                value = _feature_at(buf, pos, after)
            pos = after
        out[name] = value


# ---------------------------------------------------------------------------------- to Arrow


class TFRecordFiles:
    """TFRecord files of Examples read as Arrow tables, with the schema of their first records."""

    def __init__(self, files: Sequence[str], *, schema_records: int = DEFAULT_SCHEMA_RECORDS,
                 verify: bool = True) -> None:
        self.files = tuple(files)
        self.verify = verify
        self.skipped_features: set[str] = set()
        kinds: dict[str, int] = {}
        longest: dict[str, int] = {}
        # The records parsed for the schema are kept and reused by the next full pass.
        self._head = list(self._examples(limit=schema_records))
        for _, features in self._head:
            for name, (kind, values) in features.items():
                if kind:
                    kinds.setdefault(name, kind)
                    longest[name] = max(longest.get(name, 0), len(values))
        self.kinds = kinds
        self.scalar = {name: longest[name] <= 1 for name in kinds}
        self.schema = pa.schema([
            (name, _ARROW_TYPES[kind] if self.scalar[name] else pa.list_(_ARROW_TYPES[kind]))
            for name, kind in kinds.items()
        ])

    def _examples(self, limit: int | None = None,
                  parsed: Sequence[tuple[tuple[str, int], dict]] = ()
                  ) -> Iterator[tuple[tuple[str, int], dict]]:
        seen = 0
        for path in self.files:
            for number, record in enumerate(iter_records(path, verify=self.verify)):
                if limit is not None and seen >= limit:
                    return
                if seen < len(parsed):
                    yield parsed[seen]
                    seen += 1
                    continue
                try:
                    features = parse_example(record)
                except ValueError as exc:
                    raise DataError(f"{path} record {number}: not a tf.train.Example ({exc})"
                                    ) from None
                yield (path, number), features
                seen += 1

    def tables(self, columns: Sequence[str] | None = None,
               batch_rows: int = 4096) -> Iterator[pa.Table]:
        """The records as tables of up to ``batch_rows`` rows holding ``columns`` (all if None)."""
        names = list(self.schema.names if columns is None else columns)
        pending: list[tuple[tuple[str, int], dict]] = []
        head, self._head = self._head, []
        for item in self._examples(parsed=head):
            pending.append(item)
            if len(pending) == batch_rows:
                yield self._table(pending, names)
                pending = []
        if pending:
            yield self._table(pending, names)

    def _table(self, records: list[tuple[tuple[str, int], dict]], names: list[str]) -> pa.Table:
        for _, features in records:
            for name in features.keys() - self.kinds.keys():
                self.skipped_features.add(name)
        return pa.table({name: self._column(name, records) for name in names},
                        schema=pa.schema([self.schema.field(n) for n in names]))

    def _column(self, name: str, records: list[tuple[tuple[str, int], dict]]) -> pa.Array:
        kind = self.kinds[name]
        got = [features.get(name, _ABSENT) for _, features in records]
        kinds = {g[0] for g in got}
        if kinds - {0, kind}:
            for ((path, number), _features), (got_kind, _values) in zip(records, got,
                                                                          strict=True):
                if got_kind not in (0, kind):
                    raise DataError(
                        f"{path} record {number}: feature '{name}' is a "
                        f"{_KIND_NAMES[got_kind]} but the first records hold a "
                        f"{_KIND_NAMES[kind]}; every record needs one kind")
        if not self.scalar[name]:
            return _list_array([g[1] if g[0] else None for g in got], kind)
        if kinds == {kind} and all(len(g[1]) == 1 for g in got):
            return pa.array([g[1][0] for g in got], type=_ARROW_TYPES[kind])
        flat: list[Any] = []
        for ((path, number), _features), (got_kind, values) in zip(records, got, strict=True):
            if not got_kind or len(values) == 0:
                flat.append(None)
            elif len(values) == 1:
                flat.append(values[0])
            else:
                raise DataError(
                    f"{path} record {number}: feature '{name}' holds {len(values)} values "
                    "but the first records hold one; read more records for the schema "
                    "(schema_records) or write it as a list in every record")
        return pa.array(flat, type=_ARROW_TYPES[kind])


def _list_array(values: list[Any], kind: int) -> pa.Array:
    """A list column from per-row value lists (``None`` for a missing feature)."""
    lengths = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int32,
                          count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [v for v in values if v is not None]
    if kind == BYTES_LIST:
        flat = pa.array([item for v in present for item in v], type=pa.binary())
    else:
        dtype = np.float32 if kind == FLOAT_LIST else np.int64
        flat = pa.array(np.concatenate(present).astype(dtype, copy=False) if present
                        else np.empty(0, dtype))
    mask = pa.array([v is None for v in values], type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=mask)

"""TFRecord reading: CRC32C, framing checks and the Example parser, cross-checked with TF."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import DataError
from modelcaliper.workload.selection import Selection, select_rows
from modelcaliper.workload.tfrecord import (
    TFRecordFiles,
    crc32c,
    iter_records,
    masked_crc32c,
    parse_example,
)

# ------------------------------------------------------------------ hand-built records


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values, packed: bool = True) -> bytes:
    if kind == "bytes":
        inner = b"".join(_len_field(1, v) for v in values)
        return _len_field(1, inner)
    if kind == "float":
        if packed:
            inner = _len_field(1, np.asarray(values, "<f4").tobytes())
        else:
            inner = b"".join(_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values)
        return _len_field(2, inner)
    if packed:
        inner = _len_field(1, b"".join(_varint(v) for v in values))
    else:
        inner = b"".join(_varint(1 << 3 | 0) + _varint(v) for v in values)
    return _len_field(3, inner)


def example(features: dict[str, tuple]) -> bytes:
    """A serialized tf.train.Example from name → (kind, values[, packed])."""
    entries = b"".join(
        _len_field(1, _len_field(1, name.encode()) + _len_field(2, _feature(*spec)))
        for name, spec in features.items()
    )
    return _len_field(1, entries)


def frame(data: bytes) -> bytes:
    """One TFRecord record around ``data``."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


def write_records(path, records: list[bytes]):
    path.write_bytes(b"".join(frame(r) for r in records))
    return path


def rows(n: int) -> list[bytes]:
    return [
        example({
            "row": ("int", [i]),
            "price": ("float", [i / 2]),
            "country": ("bytes", [b"US" if i % 3 else b"DE"]),
            "hist": ("int", list(range(i % 4))),
        })
        for i in range(n)
    ]


# ------------------------------------------------------------------ CRC32C


def _reference_crc(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"", 0x00000000),  # empty input
        (b"123456789", 0xE3069283),  # the standard CRC-32C check value
        (bytes(32), 0x8A9136AA),  # 32 zero bytes (RFC 3720 test vector)
        (b"\xff" * 32, 0x62A8AB43),  # 32 0xFF bytes (RFC 3720 test vector)
        (bytes(range(32)), 0x46DD794E),  # ascending bytes (RFC 3720 test vector)
    ],
)
def test_crc32c_known_values(data, crc):
    assert crc32c(data) == crc


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=2000))
def test_crc32c_matches_the_bitwise_definition(data):
    # short inputs take the byte loop, long ones the block tables: both must agree
    assert crc32c(data) == _reference_crc(data)


# ------------------------------------------------------------------ Example parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # packed floats
        (("float", [1.5, -2.0]), [1.5, -2.0]),
        # floats written one field each
        (("float", [1.5, -2.0], False), [1.5, -2.0]),
        # packed int64 including negatives and the extremes
        (("int", [0, -1, 2**63 - 1, -(2**63), 300]), [0, -1, 2**63 - 1, -(2**63), 300]),
        # int64 written one field each
        (("int", [7, -7], False), [7, -7]),
        # bytes values, one empty
        (("bytes", [b"a", b"", b"\xff\x00"]), [b"a", b"", b"\xff\x00"]),
        # an empty float list
        (("float", []), []),
    ],
)
def test_parse_example_values(spec, expected):
    kind, values = parse_example(example({"f": spec}))["f"]
    assert kind == {"bytes": 1, "float": 2, "int": 3}[spec[0]]
    assert list(values) == expected


@pytest.mark.parametrize(
    "record",
    [
        b"\x0a\x05abc",  # a length running past the end
        b"\x0a\x03\x0a\x01",  # a nested entry cut short
        b"\x0f",  # wire type 7 does not exist
        b"\x0a\x02\x0a\x80",  # a varint cut short inside a nested message
    ],
)
def test_parse_example_rejects_garbage(record):
    with pytest.raises(ValueError):
        parse_example(record)


def test_unknown_fields_are_skipped():
    record = example({"x": ("int", [5])}) + _varint(9 << 3 | 0) + _varint(1)
    assert list(parse_example(record)["x"][1]) == [5]


# ------------------------------------------------------------------ framing errors


def test_reads_every_record(tmp_path):
    path = write_records(tmp_path / "a.tfrecord", rows(10))
    assert len(list(iter_records(path))) == 10


@pytest.mark.parametrize(
    ("offset", "fragment"),
    [
        (3, "record 0: length checksum mismatch"),  # a length byte flipped
        (9, "record 0: length checksum mismatch"),  # the length's CRC flipped
        (14, "record 0: data checksum mismatch"),  # a data byte flipped
        (-1, "record 2: data checksum mismatch"),  # the last record's data CRC flipped
    ],
)
def test_crc_mismatch_names_file_and_record(tmp_path, offset, fragment):
    path = write_records(tmp_path / "bad.tfrecord", rows(3))
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=fragment) as info:
        list(iter_records(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # the same failure surfaces through a selection
    with pytest.raises(DataError, match=fragment):
        select_rows(path, Selection(sample=2))


@pytest.mark.parametrize(
    ("cut", "fragment"),
    [
        (5, "record 0: file ends inside the record header"),  # inside the header
        (20, "record 0: file ends inside the record data"),  # inside the data
    ],
)
def test_truncated_file(tmp_path, cut, fragment):
    path = write_records(tmp_path / "t.tfrecord", rows(2))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError, match=fragment):
        list(iter_records(path))


def test_huge_declared_length_is_refused(tmp_path):
    length = struct.pack("<Q", 1 << 40)
    path = tmp_path / "h.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc32c(length)))
    with pytest.raises(DataError, match="declares 1099511627776 bytes"):
        list(iter_records(path))


def test_record_that_is_not_an_example(tmp_path):
    path = write_records(tmp_path / "n.tfrecord", [example({"x": ("int", [1])}), b"\x0f"])
    with pytest.raises(DataError, match="record 1: not a tf.train.Example"):
        select_rows(path)


# ------------------------------------------------------------------ to Arrow


def test_schema_and_columns(tmp_path):
    path = write_records(tmp_path / "a.tfrecord", rows(8))
    files = TFRecordFiles([str(path)])
    assert str(files.schema.field("row").type) == "int64"  # one value per record: a scalar
    assert str(files.schema.field("hist").type) == "list<item: int64>"  # lists stay lists
    columns = select_rows(path).columns()
    assert columns["row"].tolist() == list(range(8))
    assert columns["country"][0] == b"DE"
    # lists of different lengths arrive as one array per row
    assert [list(v) for v in columns["hist"][:4]] == [[], [0], [0, 1], [0, 1, 2]]


def test_missing_feature_is_null(tmp_path):
    records = [example({"a": ("float", [1.0]), "b": ("int", [1])}),
               example({"a": ("float", [2.0])})]
    columns = select_rows(write_records(tmp_path / "m.tfrecord", records)).columns()
    assert columns["b"][0] == 1 and np.isnan(columns["b"][1])  # an int column with a null


def test_kind_change_is_an_error(tmp_path):
    records = [example({"a": ("float", [1.0])}), example({"a": ("int", [1])})]
    with pytest.raises(DataError, match="record 1: feature 'a' is a int64_list but the first "
                                        "records hold a float_list"):
        select_rows(write_records(tmp_path / "k.tfrecord", records))


def test_list_after_the_schema_records_is_an_error(tmp_path):
    records = [example({"a": ("int", [1])})] * 3 + [example({"a": ("int", [1, 2])})]
    path = write_records(tmp_path / "l.tfrecord", records)
    files = TFRecordFiles([str(path)], schema_records=2)
    with pytest.raises(DataError, match="record 3: feature 'a' holds 2 values"):
        list(files.tables())


def test_gzipped_file(tmp_path):
    plain = write_records(tmp_path / "a.tfrecord", rows(5))
    packed = tmp_path / "a.tfrecord.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert select_rows(packed).columns()["row"].tolist() == list(range(5))


def test_where_and_sample_on_tfrecord(tmp_path):
    path = write_records(tmp_path / "a.tfrecord", rows(300))
    picked = select_rows(path, Selection(sample=20, where="country == 'US' and price > 10",
                                         seed=3))
    columns = picked.columns()
    assert len(columns["row"]) == 20
    assert all(c == b"US" for c in columns["country"]) and (columns["price"] > 10).all()


# ------------------------------------------------------------------ cross-check with TensorFlow


@pytest.mark.interop
def test_files_written_by_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    path = tmp_path / "tf.tfrecord"
    originals = []
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(200):
            feature = {
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i - 100, 2**62])),
                "score": tf.train.Feature(float_list=tf.train.FloatList(
                    value=rng.random(i % 7).tolist())),
                "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"t%d" % i] * 3)),
            }
            proto = tf.train.Example(features=tf.train.Features(feature=feature))
            originals.append(proto)
            writer.write(proto.SerializeToString())
    ours = list(iter_records(path))
    theirs = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert ours == theirs  # framing and both checksums agree with TF's reader
    for record, proto in zip(ours, originals, strict=True):
        parsed = parse_example(record)
        assert set(parsed) == set(proto.features.feature)
        for name, feature in proto.features.feature.items():
            kind = feature.WhichOneof("kind")
            np.testing.assert_array_equal(parsed[name][1], list(getattr(feature, kind).value))
    # and TF reads back what a hand-framed file holds
    mine = write_records(tmp_path / "mine.tfrecord", rows(5))
    back = [tf.train.Example.FromString(r) for r in
            tf.data.TFRecordDataset(str(mine)).as_numpy_iterator()]
    assert [e.features.feature["row"].int64_list.value[0] for e in back] == list(range(5))

"""Dataset readers on small Parquet, CSV and JSON-lines files written for each test."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from modelcaliper.errors import DataError
from modelcaliper.workload.datasets import detect_format, read_columns

ROWS = 100


def table() -> pa.Table:
    return pa.table(
        {
            "row": pa.array(np.arange(ROWS, dtype=np.int64)),
            "price": pa.array(np.linspace(0, 1, ROWS)),
            "country": pa.array([f"c{i % 7}" for i in range(ROWS)]),
            "emb": pa.array(
                [[float(i), float(i) + 0.5, 0.0] for i in range(ROWS)], pa.list_(pa.float32())
            ),
        }
    )


def write(tmp_path, fmt: str, name: str | None = None):
    t = table()
    if fmt == "parquet":
        path = tmp_path / (name or "rows.parquet")
        pq.write_table(t, path, row_group_size=16)  # several row groups, to stream across them
    elif fmt == "csv":
        path = tmp_path / (name or "rows.csv")
        pacsv.write_csv(t.drop_columns(["emb"]), path)
    else:
        path = tmp_path / (name or "rows.jsonl")
        with path.open("w") as f:
            for row in t.to_pylist():
                f.write(json.dumps(row) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_first_rows_of_each_format(tmp_path, fmt):
    cols = read_columns(write(tmp_path, fmt), limit=10)
    assert cols["row"].tolist() == list(range(10))
    assert cols["country"].dtype == object and cols["country"][3] == "c3"
    assert cols["price"].dtype.kind == "f"
    if fmt != "csv":
        # a list column becomes a fixed-length vector per row
        assert cols["emb"].shape == (10, 3)
        assert cols["emb"][2].tolist() == [2.0, 2.5, 0.0]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_seeded_sample(tmp_path, fmt):
    path = write(tmp_path, fmt)
    a = read_columns(path, limit=20, sample_seed=5)["row"]
    b = read_columns(path, limit=20, sample_seed=5)["row"]
    c = read_columns(path, limit=20, sample_seed=6)["row"]
    # same seed, same sample; rows come back in file order, without repeats
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 20
    # a sample is not just the first rows
    assert a.max() >= 20


def test_sample_covers_the_whole_file_evenly(tmp_path):
    path = write(tmp_path, "parquet")
    hits = np.zeros(ROWS)
    for seed in range(200):
        hits[read_columns(path, limit=10, sample_seed=seed)["row"]] += 1
    # every row is picked about 10% of the time, late row groups as often as early ones
    assert hits[:50].sum() == pytest.approx(hits[50:].sum(), rel=0.2)
    assert hits.min() > 0


def test_limit_larger_than_the_data(tmp_path):
    assert len(read_columns(write(tmp_path, "parquet"), limit=1000)["row"]) == ROWS
    assert len(read_columns(write(tmp_path, "parquet"), limit=1000, sample_seed=1)["row"]) == ROWS


def test_directory_and_glob(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table().slice(0, 50), folder / "part-0.parquet")
    pq.write_table(table().slice(50), folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")  # marker files are ignored
    assert read_columns(folder, limit=ROWS)["row"].tolist() == list(range(ROWS))
    assert read_columns(str(folder / "part-1.*"), limit=5)["row"].tolist() == [50, 51, 52, 53, 54]


def test_nested_and_fixed_size_lists(tmp_path):
    path = tmp_path / "nested.parquet"
    pq.write_table(
        pa.table(
            {
                "grid": pa.array([[[1, 2], [3, 4], [5, 6]]] * 4, pa.list_(pa.list_(pa.int32()))),
                "fixed": pa.array([[1.0, 2.0]] * 4, pa.list_(pa.float64(), 2)),
            }
        ),
        path,
    )
    cols = read_columns(path, limit=4)
    assert cols["grid"].shape == (4, 3, 2) and cols["grid"][0, 2, 1] == 6
    assert cols["fixed"].shape == (4, 2)


def test_dictionary_columns_are_decoded(tmp_path):
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"c": pa.array(["a", "b", "a"]).dictionary_encode()}), path)
    assert read_columns(path, limit=3)["c"].tolist() == ["a", "b", "a"]


def test_nulls_stay_visible(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"x": [1.0, None, 3.0], "s": ["a", None, "c"]}), path)
    cols = read_columns(path, limit=3)
    assert np.isnan(cols["x"][1])
    assert cols["s"][1] is None


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        # no such file
        (lambda p: p / "missing.parquet", "does not exist"),
        # a glob that matches nothing
        (lambda p: str(p / "*.parquet"), "no files match"),
        # an extension we cannot read
        (lambda p: (p / "rows.xlsx").write_text("x") and p / "rows.xlsx", "cannot tell the format"),
        # a file that is not what its extension says
        (
            lambda p: (p / "bad.parquet").write_text("not parquet") and p / "bad.parquet",
            "cannot read",
        ),
        # a header and no rows
        (lambda p: (p / "empty.csv").write_text("a,b\n") and p / "empty.csv", "has no rows"),
        # an empty directory
        (lambda p: (p / "d").mkdir() or p / "d", "holds no data files"),
    ],
)
def test_errors_are_data_errors(tmp_path, setup, fragment):
    with pytest.raises(DataError, match=fragment):
        read_columns(setup(tmp_path), limit=5)


def test_lists_of_different_lengths_stay_per_row(tmp_path):
    # padded or refused later, against the input they feed (see test_mapping)
    path = tmp_path / "ragged.jsonl"
    path.write_text('{"v": [1, 2]}\n{"v": [1]}\n{"v": null}\n')
    column = read_columns(path, limit=5)["v"]
    assert column.dtype == object
    assert [None if v is None else v.tolist() for v in column] == [[1, 2], [1], None]


def test_mixed_formats_in_a_directory(tmp_path):
    write(tmp_path, "parquet")
    write(tmp_path, "csv")
    with pytest.raises(DataError, match="mixes formats"):
        read_columns(tmp_path, limit=5)


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(DataError, match="≥ 1"):
        read_columns(write(tmp_path, "csv"), limit=0)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.csv", "csv"),
        ("a.csv.gz", "csv"),  # compressed CSV
        ("a.jsonl", "json"),
        ("a.ndjson", "json"),
        ("A.JSON", "json"),  # case-insensitive
        ("a.tfrecord", "tfrecord"),  # TFRecord of Examples
        ("a.tfrecords.gz", "tfrecord"),  # gzipped TFRecord
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


def test_gzipped_csv(tmp_path):
    import gzip

    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,x\n2,y\n"))
    assert read_columns(path, limit=5)["a"].tolist() == [1, 2]

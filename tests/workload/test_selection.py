"""Selections: seeded samples, fractions, filters pushed down, whole groups, strata, queries."""

from __future__ import annotations

import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import DataError
from modelcaliper.workload.datasets import open_source
from modelcaliper.workload.selection import Selection, select_rows
from modelcaliper.workload.tfrecord import masked_crc32c

ROWS = 2000
COUNTRIES = np.array(["US", "DE", "FR", "JP"])


def table() -> pa.Table:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 12, ROWS)  # queries of 1 to 11 rows, in order
    query = np.repeat(np.arange(ROWS), sizes)[:ROWS]
    return pa.table({
        "row": np.arange(ROWS, dtype=np.int64),
        "query": query.astype(np.int64),
        # constant within a query, as a query's context is
        "country": COUNTRIES[query % 4],
        "price": np.round(np.arange(ROWS) * 0.05, 2),
    })


def _tfrecord(path, t: pa.Table) -> None:
    def varint(v):
        out = bytearray()
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
        return bytes(out)

    def field(n, payload):
        return varint(n << 3 | 2) + varint(len(payload)) + payload

    def feature(value):
        if isinstance(value, str):
            return field(1, field(1, value.encode()))
        if isinstance(value, float):
            return field(2, field(1, struct.pack("<f", value)))
        return field(3, field(1, varint(value)))

    with path.open("wb") as f:
        for row in t.to_pylist():
            entries = b"".join(field(1, field(1, k.encode()) + field(2, feature(v)))
                               for k, v in row.items())
            data = field(1, entries)
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)) + data
                    + struct.pack("<I", masked_crc32c(data)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same rows as Parquet (several files and row groups), CSV, JSON lines, TFRecord."""
    base = tmp_path_factory.mktemp("sel")
    t = table()
    folder = base / "parquet"
    folder.mkdir()
    pq.write_table(t.slice(0, 1200), folder / "part-0.parquet", row_group_size=250)
    pq.write_table(t.slice(1200), folder / "part-1.parquet", row_group_size=250)
    pacsv.write_csv(t, base / "rows.csv")
    with (base / "rows.jsonl").open("w") as f:
        for row in t.to_pylist():
            f.write(json.dumps(row) + "\n")
    _tfrecord(base / "rows.tfrecord", t)
    return {"parquet": folder, "csv": base / "rows.csv", "json": base / "rows.jsonl",
            "tfrecord": base / "rows.tfrecord"}


def rows_of(source, **options) -> np.ndarray:
    return select_rows(source, Selection(**options)).columns()["row"]


# ------------------------------------------------------------------ properties


@settings(max_examples=25, deadline=None)
@given(sample=st.integers(1, ROWS), seed=st.integers(0, 2**32))
def test_sample_is_exact_seeded_and_in_file_order(sources, sample, seed):
    first = rows_of(sources["parquet"], sample=sample, seed=seed)
    again = rows_of(sources["parquet"], sample=sample, seed=seed)
    assert len(first) == sample  # exactly the size asked for
    assert first.tolist() == again.tolist()  # same seed, same rows
    assert first.tolist() == sorted(set(first.tolist()))  # no repeats, in file order


@settings(max_examples=25, deadline=None)
@given(sample=st.integers(5, ROWS - 5), seeds=st.tuples(st.integers(0, 10**9),
                                                       st.integers(0, 10**9)))
def test_different_seeds_differ(sources, sample, seeds):
    a, b = seeds
    if a != b:
        assert rows_of(sources["parquet"], sample=sample, seed=a).tolist() != rows_of(
            sources["parquet"], sample=sample, seed=b).tolist()


@settings(max_examples=25, deadline=None)
@given(sample=st.integers(1, 600), seed=st.integers(0, 2**31))
def test_groups_stay_whole(sources, sample, seed):
    full = table()
    sizes = np.bincount(full.column("query").to_numpy())
    picked = select_rows(sources["parquet"], Selection(sample=sample, group_by="query", seed=seed))
    queries = picked.columns()["query"]
    got = np.bincount(queries, minlength=sizes.size)
    chosen = np.flatnonzero(got)
    assert (got[chosen] == sizes[chosen]).all()  # every chosen group is complete
    # whole groups until the sample is reached: at least N rows, less than N plus one group
    assert sample <= len(queries) < sample + sizes.max()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), sample=st.integers(1, 300))
def test_every_format_picks_the_same_rows(sources, seed, sample):
    # priorities hash the row position or group value, not the batch layout
    options = {"sample": sample, "seed": seed, "where": "price > 20"}
    expected = rows_of(sources["parquet"], **options).tolist()
    for fmt in ("csv", "json", "tfrecord"):
        assert rows_of(sources[fmt], **options).tolist() == expected, fmt


# ------------------------------------------------------------------ table-driven behaviour


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "tfrecord"])
@pytest.mark.parametrize(
    ("options", "check"),
    [
        # a filter keeps only matching rows, and the sample is taken among them
        ({"sample": 50, "where": "country == 'US' and price > 30"},
         lambda c: len(c["row"]) == 50 and (c["price"] > 30).all()
         and set(c["country"]) <= {"US", b"US"}),
        # a fraction keeps about that share of rows
        ({"fraction": 0.25}, lambda c: 400 < len(c["row"]) < 600),
        # a filter alone keeps every matching row
        ({"where": "row < 10 or row >= 1995"},
         lambda c: c["row"].tolist() == [*range(10), *range(1995, 2000)]),
        # stratified: every country gets its exact proportional share
        ({"sample": 100, "stratify": "country"}, lambda c: _shares_match(c, 100)),
        # groups and a fraction: whole groups only
        ({"fraction": 0.1, "group_by": "query"}, lambda c: _groups_whole(c)),
        # groups and strata together
        ({"sample": 100, "group_by": "query", "stratify": "country"}, lambda c: _groups_whole(c)),
    ],
)
def test_selection_options(sources, fmt, options, check):
    picked = select_rows(sources[fmt], Selection(seed=11, **options))
    assert check(picked.columns())
    assert picked.source_rows == ROWS


def _shares_match(columns, sample) -> bool:
    full = table().column("country").to_numpy(zero_copy_only=False)
    got = [c.decode() if isinstance(c, bytes) else c for c in columns["country"]]
    for country in COUNTRIES:
        share = sample * (full == country).sum() / ROWS
        if abs(got.count(country) - share) >= 1:
            return False
    return len(got) == sample


def _groups_whole(columns) -> bool:
    sizes = np.bincount(table().column("query").to_numpy())
    got = np.bincount(columns["query"], minlength=sizes.size)
    chosen = np.flatnonzero(got)
    return chosen.size > 0 and bool((got[chosen] == sizes[chosen]).all())


def test_filter_is_pushed_down_to_row_groups(sources):
    source = open_source(sources["parquet"])
    every = source.row_groups()
    # price grows with the row number, so the statistics rule out all but the last two
    pruned = source.row_groups(ds.field("price") > 95.0)
    assert len(every) == 9 and [g.start for g in pruned] == [1700, 1950]
    picked = select_rows(sources["parquet"], Selection(sample=5, where="price > 95", seed=1))
    assert (picked.columns()["row"] >= 1900).all() and picked.matched_rows == 99


def test_only_wanted_columns_are_read(sources):
    picked = select_rows(sources["parquet"], Selection(sample=10, group_by="query"),
                         columns=["price"])
    assert picked.table.column_names == ["price", "query"]  # the group column is kept


def test_positions_match_rows(sources):
    picked = select_rows(sources["json"], Selection(sample=30, seed=4))
    assert picked.positions.tolist() == picked.columns()["row"].tolist()


def test_sample_larger_than_the_data_keeps_everything(sources):
    assert len(rows_of(sources["csv"], sample=10 * ROWS)) == ROWS


def test_pyarrow_dataset_source(sources):
    dataset = ds.dataset(str(sources["parquet"]), format="parquet")
    assert rows_of(dataset, sample=40, seed=2).tolist() == rows_of(
        sources["parquet"], sample=40, seed=2).tolist()


def test_hive_partition_columns(tmp_path):
    for country in ("US", "DE"):
        folder = tmp_path / f"country={country}"
        folder.mkdir()
        pq.write_table(pa.table({"x": [1, 2, 3]}), folder / "part.parquet")
    picked = select_rows(tmp_path, Selection(where="country == 'DE'"))
    assert picked.columns()["country"].tolist() == ["DE"] * 3


# ------------------------------------------------------------------ queries


def test_query_size_without_groups(sources):
    picked = select_rows(sources["parquet"], Selection(sample=95, query_size=10, seed=1))
    # 9 queries of 10 rows sampled from the 95; 5 rows left over
    assert picked.num_rows == 90 and picked.query_ids.tolist() == np.repeat(range(9), 10).tolist()
    assert any("5 selected rows fell outside" in note for note in picked.notes)


def test_query_size_with_groups(sources):
    picked = select_rows(sources["parquet"], Selection(fraction=0.5, group_by="query",
                                                       query_size=4, seed=1))
    columns = picked.columns()
    for q in range(picked.query_ids.max() + 1):
        rows = columns["query"][picked.query_ids == q]
        assert rows.size == 4 and len(set(rows.tolist())) == 1  # one group per query


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        # a filter that matches nothing
        ({"where": "price < 0"}, "selects no rows of .*; loosen the filter"),
        # a filter on a column the data lacks
        ({"where": "cost > 1"}, "no column 'cost'"),
        # grouping by a missing column, with a close name
        ({"group_by": "querry", "sample": 5}, "group_by column 'querry' is not in .*close "
                                               "column names: query"),
        # stratifying by a missing column
        ({"stratify": "nation", "sample": 5}, "stratify column 'nation' is not in"),
        # a stratum column that changes inside a group
        ({"stratify": "price", "group_by": "query", "sample": 5},
         "stratify column 'price' changes within one group of 'query'"),
        # groups must stay whole and every group is smaller than a query
        ({"group_by": "query", "query_size": 50}, "query_size 50 is larger than every group "
                                                  "of 'query' \\(the largest has 11 rows\\)"),
        # more candidates than selected rows
        ({"sample": 5, "query_size": 10}, "query_size 10 needs at least 10 rows"),
    ],
)
def test_selection_errors(sources, options, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        select_rows(sources["parquet"], Selection(**options))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"sample": 0}, "sample must be ≥ 1"),  # no rows
        ({"fraction": 1.5}, "fraction must be in \\(0, 1\\]"),  # not a fraction
        ({"sample": 5, "fraction": 0.5}, "not both"),  # two sizes
        ({"stratify": "country"}, "needs a sample or a fraction"),  # nothing to share out
        ({"query_size": 0}, "query_size must be ≥ 1"),  # empty queries
        ({"small_groups": "pad"}, "small_groups must be one of skip, repeat"),  # unknown policy
    ],
)
def test_invalid_selections(options, fragment):
    with pytest.raises(DataError, match=fragment):
        Selection(**options)


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), path)
    with pytest.raises(DataError, match="has no rows"):
        select_rows(path, Selection(sample=3))


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": np.arange(1000)}), path)
    raw = bytearray(path.read_bytes())
    raw[-12:-8] = b"\xff\xff\xff\x7f"  # the footer length no longer fits the file
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"cannot read {path} as parquet"):
        select_rows(path, Selection(sample=3))

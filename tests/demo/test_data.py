"""The demo data generator: layout, distributions, query structure, determinism, Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.demo.data import (
    NUMERIC_KINDS,
    FeatureLayout,
    _split_counts,
    generate_chunks,
    write_dataset,
)
from modelcaliper.errors import UsageError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType
from modelcaliper.workload import map_inputs, read_columns

LAYOUT = FeatureLayout()
QUERIES, CANDIDATES = 6, 1000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six queries of 1000 candidates with the default layout, in small row groups."""
    return write_dataset(tmp_path_factory.mktemp("data") / "train.parquet", LAYOUT,
                         queries=QUERIES, candidates=CANDIDATES, seed=3).path


@pytest.fixture(scope="module")
def columns(dataset: Path) -> dict[str, np.ndarray]:
    """The data set read back the way ``caliper run --data`` reads it."""
    return read_columns(dataset, limit=QUERIES * CANDIDATES)


def kind_columns(kind: str) -> list[int]:
    return [i for i, c in enumerate(LAYOUT.numeric_columns) if c.kind == kind]


SCHEMA = [
    # a query's candidates share its id
    ("query_id", pa.int64()),
    # ≈260 candidate features as one fixed-size list per row
    ("numeric", pa.list_(pa.float32(), 260)),
    # ≈30 categorical strings
    ("categorical", pa.list_(pa.string(), 30)),
    # ≈10 query-context features
    ("context", pa.list_(pa.float32(), 10)),
    # the click
    ("label", pa.float32()),
]


@pytest.mark.parametrize(("name", "arrow_type"), SCHEMA)
def test_columns_are_the_model_inputs_as_fixed_size_lists(dataset: Path, name: str,
                                                          arrow_type: pa.DataType) -> None:
    schema = pq.read_schema(dataset)
    assert schema.field(name).type == arrow_type
    assert schema.names == [n for n, _ in SCHEMA]


def test_layout_metadata_describes_every_column(dataset: Path) -> None:
    import json

    meta = json.loads(pq.read_schema(dataset).metadata[b"modelcaliper.demo.layout"])
    assert [c["name"] for c in meta["numeric"]] == [c.name for c in LAYOUT.numeric_columns]
    assert len(meta["categorical"]) == 30 and len(meta["context"]) == 10


LAYOUTS = [
    # the demo's default: 260 numeric, 30 categorical, 10 context
    (FeatureLayout(), (260, 30, 10)),
    # the smallest layout: one column of each numeric kind
    (FeatureLayout(numeric=7, categorical=3, context=2, discretized=1), (7, 3, 2)),
    # an uneven middle size
    (FeatureLayout(numeric=41, categorical=5, context=4, discretized=3), (41, 5, 4)),
]


@pytest.mark.parametrize(("layout", "widths"), LAYOUTS)
def test_batches_have_the_layout_widths(layout: FeatureLayout, widths: tuple[int, ...]) -> None:
    batches = list(generate_chunks(layout, queries=3, candidates=50, rows_per_chunk=100))
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 150
    for name, width in zip(("numeric", "categorical", "context"), widths, strict=True):
        assert table.schema.field(name).type.list_size == width
    kinds = {c.kind for c in layout.numeric_columns}
    assert kinds == {kind for kind, _ in NUMERIC_KINDS}  # every kind present, even when small
    assert len(layout.discretized_indices) == layout.discretized


BAD_LAYOUTS = [
    # too few numeric columns for one of each kind
    ({"numeric": 6}, "numeric ≥ 7"),
    # too few categorical columns
    ({"categorical": 2}, "categorical ≥ 3"),
    # more context features than the generator knows
    ({"context": 11}, "at most 10 context"),
    # more bucketized columns than numeric ones
    ({"numeric": 7, "discretized": 8}, "cannot bucketize 8 of 7"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_LAYOUTS)
def test_impossible_layouts_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        FeatureLayout(**kwargs)


def test_no_queries_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="≥ 1 query"):
        write_dataset(tmp_path / "x.parquet", queries=0)


def test_sparse_columns_hold_30_to_90_percent_zeros(columns: dict[str, np.ndarray]) -> None:
    zeros = (columns["numeric"] == 0).mean(axis=0)
    counts = zeros[kind_columns("count")]
    assert counts.min() >= 0.25 and counts.max() <= 0.93
    assert counts.min() < 0.4 and counts.max() > 0.8  # the whole range is used
    ratings = zeros[kind_columns("rating")]
    assert ratings.min() >= 0.25 and ratings.max() <= 0.75
    # "many sparse": well over a third of all numeric features
    assert ((zeros >= 0.3) & (zeros <= 0.92)).sum() >= 100
    for kind in ("dense", "price", "pareto"):
        assert zeros[kind_columns(kind)].max() < 0.01, kind


def test_quantized_columns(columns: dict[str, np.ndarray]) -> None:
    numeric = columns["numeric"].astype(np.float64)
    ratings = numeric[:, kind_columns("rating")]
    assert np.array_equal(ratings * 2, np.round(ratings * 2))  # 0.5 steps
    assert ratings.min() == 0 and ratings.max() <= 5
    counts = numeric[:, kind_columns("count")]
    assert np.array_equal(counts, np.round(counts)) and counts.min() == 0
    prices = numeric[:, kind_columns("price")]
    # two decimals, up to float32's precision (exact to the cent below 1000)
    below = prices[prices < 1000]
    assert below.size > 0.9 * prices.size
    cents = below * 100
    assert np.abs(cents - np.round(cents)).max() < 0.01
    assert prices.min() >= 0.01


def test_heavy_tailed_columns(columns: dict[str, np.ndarray]) -> None:
    numeric = columns["numeric"].astype(np.float64)
    for kind in ("lognormal", "pareto"):
        block = numeric[:, kind_columns(kind)]
        tail_ratio = np.quantile(block, 0.999, axis=0) / np.maximum(
            np.quantile(block, 0.5, axis=0), 1e-9)
        assert np.median(tail_ratio) > 10, kind
    dense = numeric[:, kind_columns("dense")]
    assert dense.min() >= -1 and dense.max() <= 1


def test_categorical_strings_and_zipf_frequencies(columns: dict[str, np.ndarray]) -> None:
    strings = columns["categorical"]
    lengths = np.vectorize(len)(strings)
    assert lengths.min() >= 3 and lengths.max() <= 20
    for j, col in enumerate(LAYOUT.categorical_columns):
        values, counts = np.unique(strings[:, j], return_counts=True)
        assert len(values) <= col.cardinality
        if col.cardinality >= 1000:
            # Zipf: the head value is far more common than a typical value seen
            assert counts.max() > 20 * np.median(counts), col.name
    cards = sorted(c.cardinality for c in LAYOUT.categorical_columns)
    assert cards[0] <= 5 and cards[-1] >= 40_000


def test_context_is_constant_within_a_query_and_varies_across(
        columns: dict[str, np.ndarray]) -> None:
    ids, context = columns["query_id"], columns["context"]
    assert np.array_equal(ids, np.repeat(np.arange(QUERIES), CANDIDATES))
    per_query = context.reshape(QUERIES, CANDIDATES, -1)
    assert (per_query == per_query[:, :1, :]).all()
    assert len({tuple(row) for row in per_query[:, 0, :]}) == QUERIES


def test_labels_carry_a_learnable_signal(columns: dict[str, np.ndarray]) -> None:
    label, numeric = columns["label"], columns["numeric"]
    assert set(np.unique(label)) == {0.0, 1.0}
    assert 0.05 < label.mean() < 0.4
    first_count = kind_columns("count")[0]
    clicked = np.log1p(numeric[label == 1, first_count]).mean()
    skipped = np.log1p(numeric[label == 0, first_count]).mean()
    assert clicked > skipped + 0.2


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    layout = FeatureLayout(numeric=20, categorical=4, context=3, discretized=2)

    def table(seed: int) -> pa.Table:
        return pa.Table.from_batches(list(generate_chunks(layout, 4, 100, seed=seed)))

    assert table(5).equals(table(5))
    assert not table(5).column("numeric").equals(table(6).column("numeric"))


def test_row_groups_hold_whole_queries(tmp_path: Path) -> None:
    layout = FeatureLayout(numeric=20, categorical=4, context=3, discretized=2)
    report = write_dataset(tmp_path / "t.parquet", layout, queries=7, candidates=100,
                           rows_per_group=250)
    meta = pq.ParquetFile(report.path).metadata
    assert meta.num_row_groups == 4  # 2 + 2 + 2 + 1 queries
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [200, 200, 200, 100]
    assert report.rows == 700 and not (tmp_path / "t.parquet.partial").exists()


def test_columns_feed_the_demo_signature_by_name(columns: dict[str, np.ndarray]) -> None:
    signature = Signature(inputs=(
        TensorSpec("categorical", DType.BYTES, (-1, 30)),
        TensorSpec("context", DType.FP32, (-1, 10)),
        TensorSpec("numeric", DType.FP32, (-1, 260)),
    ), outputs=(TensorSpec("score", DType.FP32, (-1, 1)),))
    mapped = map_inputs(columns, signature)
    assert mapped.tensors["numeric"].shape == (QUERIES * CANDIDATES, 260)
    assert mapped.tensors["categorical"].dtype == object
    assert isinstance(mapped.tensors["categorical"][0, 0], bytes)
    assert set(mapped.unused) == {"query_id", "label"}


@settings(max_examples=60, deadline=None)
@given(total=st.integers(7, 400))
def test_split_counts_covers_every_kind_and_sums_up(total: int) -> None:
    split = _split_counts(total, NUMERIC_KINDS)
    assert sum(n for _, n in split) == total
    assert all(n >= 1 for _, n in split)


@settings(max_examples=25, deadline=None)
@given(queries=st.integers(1, 6), candidates=st.integers(1, 40),
       rows_per_chunk=st.integers(1, 120), seed=st.integers(0, 2**32))
def test_chunks_always_hold_whole_queries(queries: int, candidates: int, rows_per_chunk: int,
                                          seed: int) -> None:
    layout = FeatureLayout(numeric=7, categorical=3, context=2, discretized=1)
    batches = list(generate_chunks(layout, queries, candidates, seed=seed,
                                   rows_per_chunk=rows_per_chunk))
    assert sum(b.num_rows for b in batches) == queries * candidates
    for batch in batches:
        assert batch.num_rows % candidates == 0
        ids = np.asarray(batch.column("query_id"))
        context = np.asarray(batch.column("context").flatten()).reshape(len(ids), -1)
        for q in np.unique(ids):
            rows = context[ids == q]
            assert (rows == rows[0]).all()

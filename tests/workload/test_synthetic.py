"""Synthetic rows: seeded determinism, query groups, and the effect of each generator option."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.workload.synthetic import QUERY_COLUMN, generate_tensor, synthetic_columns


def sig(*inputs: dict) -> Signature:
    return Signature.from_dict({"inputs": list(inputs)})


MIXED = sig(
    {"name": "price", "dtype": "float32"},
    {"name": "clicks", "dtype": "int64"},
    {"name": "country", "dtype": "string"},
    {"name": "is_new", "dtype": "bool"},
    {"name": "embedding", "dtype": "float32", "shape": [-1, 4]},
)


def one(generator: dict, dtype: str = "float32", rows: int = 4000, shape=(-1,)) -> np.ndarray:
    spec = TensorSpec("x", dtype, tuple(shape), {"generator": generator})
    return generate_tensor(spec, rows, np.random.default_rng(7))


def test_same_seed_same_rows_other_seed_other_rows():
    a = synthetic_columns(MIXED, 50, seed=3)
    b = synthetic_columns(MIXED, 50, seed=3)
    c = synthetic_columns(MIXED, 50, seed=4)
    assert list(a) == [*(s.name for s in MIXED.inputs), QUERY_COLUMN]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["price"], c["price"])
    assert not np.array_equal(a["country"], c["country"])


def test_adding_an_input_leaves_the_others_unchanged():
    small = synthetic_columns(sig({"name": "price", "dtype": "float32"}), 30, seed=1)
    large = synthetic_columns(MIXED, 30, seed=1)
    np.testing.assert_array_equal(small["price"], large["price"])


def test_dtypes_and_shapes_follow_the_signature():
    cols = synthetic_columns(MIXED, 10)
    assert cols["price"].dtype == np.float32 and cols["price"].shape == (10,)
    assert cols["clicks"].dtype == np.int64
    assert cols["country"].dtype == object and all(type(v) is bytes for v in cols["country"])
    assert cols["is_new"].dtype == np.bool_
    assert cols["embedding"].shape == (10, 4)


def test_defaults_look_like_features():
    cols = synthetic_columns(MIXED, 3000, seed=0)
    # floats vary
    assert np.unique(cols["price"]).size > 1000
    # ints are small and non-negative
    assert cols["clicks"].min() >= 0 and cols["clicks"].max() < 30
    # strings: about 100 distinct words of 4 to 16 letters
    words = set(cols["country"].tolist())
    assert 50 <= len(words) <= 100
    assert all(4 <= len(w) <= 16 and w.isalpha() for w in words)
    # booleans take both values
    assert 0.3 < cols["is_new"].mean() < 0.7


def test_query_groups_number_rows():
    cols = synthetic_columns(MIXED, 12, query_size=5)
    assert cols[QUERY_COLUMN].tolist() == [0] * 5 + [1] * 5 + [2] * 2


def test_per_query_inputs_are_constant_within_a_group():
    signature = sig(
        {
            "name": "user_country",
            "dtype": "string",
            "generator": {"per_query": True, "cardinality": 50},
        },
        {"name": "user_age", "dtype": "float32", "generator": {"per_query": True}},
        {"name": "price", "dtype": "float32"},
    )
    cols = synthetic_columns(signature, 100, query_size=10)
    groups = cols[QUERY_COLUMN]
    for name in ("user_country", "user_age"):
        for g in range(10):
            assert len(set(cols[name][groups == g].tolist())) == 1
    # ...but differ between groups, unlike an ordinary input that changes row by row
    assert len(set(cols["user_age"].tolist())) == 10
    assert len(set(cols["price"][groups == 0].tolist())) == 10


@pytest.mark.parametrize(
    ("generator", "dtype", "check"),
    [
        # normal with a given mean and spread
        (
            {"kind": "normal", "mean": 10, "std": 2},
            "float64",
            lambda v: abs(v.mean() - 10) < 0.2 and abs(v.std() - 2) < 0.2,
        ),
        # lognormal values are positive and skewed
        ({"kind": "lognormal"}, "float32", lambda v: v.min() > 0 and v.mean() > np.median(v)),
        # uniform stays within its bounds
        (
            {"kind": "uniform", "low": 5, "high": 6},
            "float32",
            lambda v: v.min() >= 5 and v.max() <= 6,
        ),
        # categorical numbers take at most `cardinality` values
        (
            {"kind": "categorical", "cardinality": 7},
            "int32",
            lambda v: set(v.tolist()) <= set(range(7)),
        ),
        # categorical floats too
        ({"kind": "categorical", "cardinality": 3}, "float32", lambda v: np.unique(v).size <= 3),
        # constant numbers
        ({"kind": "constant", "value": 4.5}, "float32", lambda v: (v == 4.5).all()),
        # constant strings
        ({"kind": "constant", "value": "de"}, "string", lambda v: set(v.tolist()) == {b"de"}),
        # categorical strings of a given length and cardinality
        (
            {"cardinality": 5, "length": [3, 3]},
            "string",
            lambda v: len(set(v.tolist())) == 5 and {len(w) for w in v} == {3},
        ),
        # a share of zeros on top of another generator
        (
            {"kind": "uniform", "low": 1, "high": 2, "zero_fraction": 0.3},
            "float32",
            lambda v: 0.25 < (v == 0).mean() < 0.35,
        ),
        # empty strings are the zeros of string inputs
        ({"zero_fraction": 0.5}, "string", lambda v: 0.45 < np.mean([w == b"" for w in v]) < 0.55),
        # rounding to stored precision
        (
            {"kind": "uniform", "low": 0, "high": 100, "decimals": 1},
            "float64",
            lambda v: np.allclose(v, np.round(v, 1)),
        ),
        # integers with a float generator are rounded and clipped into the dtype's range
        (
            {"kind": "normal", "mean": 0, "std": 1000},
            "uint8",
            lambda v: v.min() == 0 and v.max() == 255,
        ),
    ],
)
def test_generator_options(generator, dtype, check):
    values = one(generator, dtype)
    assert check(values), values[:10]


def test_dim_sets_the_size_of_inner_wildcards():
    assert one({"dim": 6}, "int64", rows=3, shape=(-1, -1)).shape == (3, 6)
    assert one({}, "int64", rows=3, shape=(-1, -1)).shape == (3, 1)


@pytest.mark.parametrize(
    ("generator", "dtype", "fragment"),
    [
        ({"kind": "zipf"}, "float32", "kind 'zipf' is not one of"),  # unknown kind
        ({"colour": "red"}, "float32", "unknown generator option"),  # unknown option
        ({"kind": "normal"}, "string", "needs a numeric input"),  # numbers for a string input
        ({"zero_fraction": 1.5}, "float32", "zero_fraction must be in"),  # not a fraction
        ({"cardinality": 0, "kind": "categorical"}, "int32", "cardinality must be"),  # no values
        ({"length": [5, 2]}, "string", "length must be"),  # min above max
        ({"dim": 0}, "float32", "dim must be"),  # empty inner dimension
        ("normal", "float32", "must be an object"),  # not an object
    ],
)
def test_bad_generator_options_name_the_input(generator, dtype, fragment):
    with pytest.raises(DataError, match=f"input 'x'.*{fragment}"):
        one(generator, dtype, rows=10)


def test_query_column_must_not_clash_with_an_input():
    with pytest.raises(DataError, match="clashes"):
        synthetic_columns(sig({"name": "query_id", "dtype": "int64"}), 10)
    cols = synthetic_columns(sig({"name": "query_id", "dtype": "int64"}), 10, query_column="qid")
    assert "qid" in cols


def test_row_count_must_be_positive():
    with pytest.raises(DataError, match="at least 1 row"):
        synthetic_columns(MIXED, 0)

"""Building requests: column matching, dtype coercion with checks, batching and groups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType
from modelcaliper.workload.requests import (
    build_requests,
    coerce_column,
    group_slices,
    match_columns,
    normalise_name,
)

SIG = Signature.from_dict(
    {
        "inputs": [
            {"name": "price_usd", "dtype": "float32"},
            {"name": "clicks", "dtype": "int64"},
            {"name": "country", "dtype": "string"},
        ]
    }
)


def columns(rows: int = 10) -> dict[str, np.ndarray]:
    return {
        "price_usd": np.arange(rows, dtype=np.float64) / 2,
        "clicks": np.arange(rows, dtype=np.int64),
        "country": np.array([f"c{i % 3}" for i in range(rows)], dtype=object),
        "query": np.array([i // 4 for i in range(rows)]),
    }


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("price_usd", "price_usd"),  # already normal
        ("Price (USD)", "price_usd"),  # case, spaces and brackets
        ("price-usd", "price_usd"),  # hyphen
        ("__ctr.7d__", "ctr_7d"),  # dots, leading and trailing separators
    ],
)
def test_normalise_name(name, normal):
    assert normalise_name(name) == normal


def test_exact_names_win_over_normalised_ones():
    mapping = match_columns(["Price (USD)", "price_usd", "clicks", "country"], SIG)
    assert mapping["price_usd"] == "price_usd"


def test_normalised_names_match():
    mapping = match_columns(["Price (USD)", "CLICKS", "Country"], SIG)
    assert mapping == {"price_usd": "Price (USD)", "clicks": "CLICKS", "country": "Country"}


def test_missing_inputs_are_named_with_close_columns():
    with pytest.raises(DataError) as info:
        match_columns(["price", "clicks_7d", "country"], SIG)
    message = str(info.value)
    assert "'price_usd'" in message and "'clicks'" in message
    assert "close column names: price, clicks_7d" in message
    assert "\n" not in message


def test_two_columns_normalising_to_one_input():
    with pytest.raises(DataError, match="matches several columns"):
        match_columns(["Price USD", "price-usd", "clicks", "country"], SIG)


@pytest.mark.parametrize(
    ("values", "dtype", "shape", "expected"),
    [
        # float64 column into a float32 input
        (np.array([1.5, 2.5]), "FP32", (-1,), np.array([1.5, 2.5], np.float32)),
        # whole floats into an integer input
        (np.array([1.0, 2.0]), "INT32", (-1,), np.array([1, 2], np.int32)),
        # integers into a float input
        (np.array([1, 2]), "FP64", (-1,), np.array([1.0, 2.0])),
        # 0/1 integers into a bool input
        (np.array([0, 1]), "BOOL", (-1,), np.array([False, True])),
        # text into a string input becomes bytes
        (
            np.array(["a", "bé"], dtype=object),
            "BYTES",
            (-1,),
            np.array([b"a", "bé".encode()], dtype=object),
        ),
        # integer ids into a string input become their decimal text
        (np.array([7, 42]), "BYTES", (-1,), np.array([b"7", b"42"], dtype=object)),
        # a plain column feeds a [-1, 1] input
        (np.array([1.0, 2.0]), "FP32", (-1, 1), np.array([[1.0], [2.0]], np.float32)),
        # vectors feed a vector input
        (np.ones((2, 3)), "FP32", (-1, 3), np.ones((2, 3), np.float32)),
        # a wildcard inner dimension takes any length
        (np.ones((2, 5)), "FP32", (-1, -1), np.ones((2, 5), np.float32)),
    ],
)
def test_coercions_that_lose_nothing(values, dtype, shape, expected):
    out = coerce_column(values, TensorSpec("x", dtype, shape), "x")
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("values", "dtype", "shape", "fragment"),
    [
        # strings into a float input, naming column and input
        (
            np.array(["a"], dtype=object),
            "FP32",
            (-1,),
            "column 'col' \\(for input 'x'\\) holds strings but input 'x' is FP32",
        ),
        # fractions into an integer input
        (np.array([1.5]), "INT64", (-1,), "non-integer values \\(e.g. 1.5\\)"),
        # NaN into an integer input
        (np.array([np.nan]), "INT64", (-1,), "missing or infinite"),
        # beyond the integer type's range
        (np.array([300]), "UINT8", (-1,), "outside UINT8's range"),
        # not 0/1 into a bool input
        (np.array([2]), "BOOL", (-1,), "other than 0 and 1"),
        # floats into a string input
        (np.array([1.5]), "BYTES", (-1,), "holds floats but input 'x' is BYTES"),
        # a null string
        (np.array(["a", None], dtype=object), "BYTES", (-1,), "missing values"),
        # vector length differs from the input's
        (np.ones((2, 4)), "FP32", (-1, 3), "rows of shape \\[4\\] but input 'x' wants \\[3\\]"),
        # scalar column into a vector input
        (np.ones(2), "FP32", (-1, 3), "rows of shape \\[\\] but input 'x' wants \\[3\\]"),
        # dates are not numbers
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "FP32", (-1,), "cannot take"),
    ],
)
def test_coercions_that_would_lose_something_fail(values, dtype, shape, fragment):
    with pytest.raises(DataError, match=fragment):
        coerce_column(values, TensorSpec("x", dtype, shape), "col")


def test_requests_of_batch_size_rows():
    requests = build_requests(columns(10), SIG, 4, model_name="ranker")
    assert [r.batch_size for r in requests] == [4, 4, 2]
    first = requests[0]
    assert first.model_name == "ranker" and first.signature_name == "serving_default"
    assert set(first.inputs) == {"price_usd", "clicks", "country"}
    assert first.inputs["price_usd"].dtype == np.float32
    assert first.inputs["country"].tolist() == [b"c0", b"c1", b"c2", b"c0"]
    assert requests[2].inputs["clicks"].tolist() == [8, 9]


def test_max_requests_cuts_the_list():
    assert len(build_requests(columns(10), SIG, 2, max_requests=3)) == 3


def test_group_by_never_mixes_groups():
    # query: 0 0 0 0 1 1 1 1 2 2
    requests = build_requests(columns(10), SIG, 3, group_by="query")
    assert [r.inputs["clicks"].tolist() for r in requests] == [
        [0, 1, 2],
        [3],
        [4, 5, 6],
        [7],
        [8, 9],
    ]


def test_interleaved_groups_are_gathered_in_first_seen_order():
    # groups b, a, b, a, c -> b's rows, then a's, then c's
    slices = group_slices(np.array(["b", "a", "b", "a", "c"], dtype=object), 5, 10)
    assert [s.tolist() for s in slices] == [[0, 2], [1, 3], [4]]


def test_unknown_group_column_lists_close_ones():
    with pytest.raises(DataError, match="'querys' is not in the data; close column names: query"):
        build_requests(columns(), SIG, 3, group_by="querys")


def test_batch_size_must_be_positive():
    with pytest.raises(DataError, match="≥ 1"):
        group_slices(None, 10, 0)


def test_strings_into_a_float_input_name_both():
    data = columns()
    data["price_usd"] = np.array(["cheap"] * 10, dtype=object)
    with pytest.raises(
        DataError, match="column 'price_usd' holds strings but input 'price_usd' is FP32"
    ):
        build_requests(data, SIG, 3)


def test_dtype_of_built_tensors_matches_the_signature():
    request = build_requests(columns(), SIG, 5)[0]
    for spec in SIG.inputs:
        expected = np.dtype(object) if spec.dtype is DType.BYTES else spec.dtype.numpy
        assert request.inputs[spec.name].dtype == expected


@given(
    groups=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=60),
    batch_size=st.integers(min_value=1, max_value=8),
)
def test_group_slices_cover_every_row_once_without_mixing(groups, batch_size):
    keys = np.array(groups)
    slices = group_slices(keys, len(groups), batch_size)
    flat = np.concatenate(slices)
    assert sorted(flat.tolist()) == list(range(len(groups)))
    for rows in slices:
        assert 1 <= rows.size <= batch_size
        assert len(set(keys[rows].tolist())) == 1
        assert (np.diff(rows) > 0).all()  # rows keep their order within a group

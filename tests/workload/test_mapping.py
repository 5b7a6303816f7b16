"""Signature mapping: --map flags, map files, name matching, pads, dtype and shape checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature
from modelcaliper.workload.mapping import InputMap, load_input_map, map_inputs, plan_inputs

SIG = Signature.from_dict({
    "inputs": [
        {"name": "price", "dtype": "float32"},
        {"name": "country", "dtype": "string"},
        {"name": "history", "dtype": "int64", "shape": [-1, 4]},
        {"name": "tokens", "dtype": "int32", "shape": [-1, -1]},
    ]
})


def ragged(*rows):
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, dtype=np.int64) for r in rows]
    return out


def columns():
    return {
        "cost": np.array([1, 2, 3], dtype=np.int64),
        "Country": np.array(["us", "de", "fr"], dtype=object),
        "history": ragged([1, 2], [3], [4, 5, 6, 7]),
        "tokens": ragged([9], [8, 7], []),
        "label": np.array([0.1, 0.2, 0.3]),
        "extra": np.array([1, 1, 1]),
    }


FULL_MAP = InputMap({"price": "cost"}, {"history": 0, "tokens": -1})


def test_map_flags_names_and_pads():
    mapped = map_inputs(columns(), SIG, FULL_MAP, keep=["label"])
    # --map price=cost; Country matched by normalised name; the rest by exact name
    assert mapped.plan.sources == {"price": "cost", "country": "Country", "history": "history",
                                   "tokens": "tokens"}
    # int64 → float32 is a lossless-enough widening for a model input
    assert mapped.tensors["price"].dtype == np.float32
    # ragged lists padded to the fixed length 4, and to the longest row for an open length
    assert mapped.tensors["history"].tolist() == [[1, 2, 0, 0], [3, 0, 0, 0], [4, 5, 6, 7]]
    assert mapped.tensors["tokens"].tolist() == [[9, -1], [8, 7], [-1, -1]]
    assert mapped.tensors["tokens"].dtype == np.int32
    # unused columns are listed once (columns kept for other purposes are not)
    assert mapped.unused == ("extra",)
    assert mapped.plan.unused_message() == "1 column(s) feed no model input and were dropped: extra"


def test_plan_reads_only_needed_columns():
    plan = plan_inputs(list(columns()), SIG, FULL_MAP)
    assert plan.columns == ["cost", "Country", "history", "tokens"]
    assert plan.unused == ("label", "extra")


@pytest.mark.parametrize(
    ("input_map", "fragment"),
    [
        # no pad: ragged lists are refused for a fixed length, naming column, input and fix
        (InputMap({"price": "cost"}, {"tokens": 0}),
         "column 'history' holds lists of 1 to 4 values but input 'history' needs 4 values; "
         "set a pad value for 'history'"),
        # no pad for an open length either: one request needs equal lengths
        (InputMap({"price": "cost"}, {"history": 0}),
         "input 'tokens' needs one length per request"),
        # a map to a column that does not exist
        (InputMap({"price": "costs"}), "feeds input 'price' from column 'costs', which the data "
                                       "does not have; close column names: cost"),
        # a map for an input the model lacks
        (InputMap({"prices": "cost"}), "names input 'prices', which the model does not have; "
                                       "close input names: price"),
        # a pad for an input the model lacks
        (InputMap({"price": "cost"}, {"histroy": 0}), "pad for input 'histroy'"),
        # no column for a required input
        (InputMap({}, {"history": 0, "tokens": 0}), "no column for model input\\(s\\) 'price'"),
        # string column into a float input: both named
        (InputMap({"price": "Country"}, {"history": 0, "tokens": 0}),
         "column 'Country' \\(for input 'price'\\) holds strings but input 'price' is FP32"),
    ],
)
def test_mapping_errors(input_map, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        map_inputs(columns(), SIG, input_map)
    assert "\n" not in str(info.value)


def test_lists_longer_than_the_input_are_refused_not_cut():
    sig = Signature.from_dict({"inputs": [{"name": "h", "dtype": "int64", "shape": [-1, 2]}]})
    with pytest.raises(DataError, match="lists of up to 3 values but input 'h' takes 2"):
        map_inputs({"h": ragged([1], [1, 2, 3])}, sig, InputMap(pads={"h": 0}))


def test_missing_list_is_refused():
    sig = Signature.from_dict({"inputs": [{"name": "h", "dtype": "int64", "shape": [-1, 2]}]})
    values = ragged([1], [2])
    values[1] = None
    with pytest.raises(DataError, match="column 'h' has missing lists"):
        map_inputs({"h": values}, sig, InputMap(pads={"h": 0}))


def test_string_lists_padded_with_text():
    sig = Signature.from_dict({"inputs": [{"name": "w", "dtype": "string", "shape": [-1, 2]}]})
    values = np.empty(2, dtype=object)
    values[:] = [np.array(["a"], dtype=object), np.array(["b", "c"], dtype=object)]
    out = map_inputs({"w": values}, sig, InputMap(pads={"w": ""})).tensors["w"]
    assert out.tolist() == [[b"a", b""], [b"b", b"c"]]


def test_one_value_lists_feed_a_scalar_input():
    # TFRecord and Parquet often store scalars as lists of one value
    sig = Signature.from_dict({"inputs": [{"name": "x", "dtype": "float32"}]})
    out = map_inputs({"x": np.array([[1.0], [2.0]])}, sig).tensors["x"]
    assert out.shape == (2,)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["price"], "must look like input=column"),  # no '='
        (["=cost"], "must look like input=column"),  # no input
        (["price=a", "price=b"], "names input 'price' twice"),  # repeated input
    ],
)
def test_bad_map_flags(flags, fragment):
    with pytest.raises(DataError, match=fragment):
        InputMap.from_flags(flags)


def test_map_file_json_with_flags_on_top(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"inputs": {"price": "label",
                                           "history": {"column": "history", "pad": 0},
                                           "tokens": {"pad": 5}}}))
    merged = load_input_map(path, ["price=cost"])
    assert merged.columns == {"price": "cost", "history": "history"}  # the flag wins
    assert merged.pads == {"history": 0, "tokens": 5}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "expected an object of input: column entries"),  # not an object
        ('{"price": {"col": "x"}}', "must map to a column name or an object"),  # unknown key
        ('{"price": {"pad": [1]}}', "pad must be a number or a string"),  # odd pad
        ("{", "is not valid JSON"),  # broken file
    ],
)
def test_bad_map_files(tmp_path, content, fragment):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(DataError, match=fragment):
        load_input_map(path)


def test_yaml_map_file(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("inputs:\n  price: cost\n  history: {column: history, pad: 0}\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="needs PyYAML .* or write the map as JSON"):
            load_input_map(path)
    else:
        assert load_input_map(path).columns == {"price": "cost", "history": "history"}


def test_missing_map_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_input_map(tmp_path / "nope.json")

"""Signature files: the JSON forms accepted and the errors for bad ones."""

from __future__ import annotations

import pytest

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec, load_signature_file
from modelcaliper.wire.tensors import DType


def test_list_form(tmp_path):
    path = tmp_path / "sig.json"
    path.write_text(
        '{"inputs": [{"name": "price", "dtype": "float32", "shape": [-1]},'
        ' {"name": "tags", "dtype": "DT_STRING", "shape": [-1, 3],'
        ' "generator": {"kind": "categorical"}}],'
        ' "outputs": [{"name": "score", "dtype": "FP32", "shape": [-1, 1]}]}'
    )
    sig = load_signature_file(path)
    assert [s.name for s in sig.inputs] == ["price", "tags"]
    assert sig.input("tags").dtype is DType.BYTES
    assert sig.input("tags").row_shape() == (3,)
    assert sig.input("tags").options["generator"] == {"kind": "categorical"}
    assert sig.outputs[0].shape == (-1, 1)
    assert Signature.from_dict(sig.to_dict()) == sig


def test_object_form_and_default_shape():
    sig = Signature.from_dict({"inputs": {"a": "int64", "b": {"dtype": "bool", "shape": [-1, 2]}}})
    assert sig.input("a") == TensorSpec("a", DType.INT64, (-1,))
    assert sig.input("b").shape == (-1, 2)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "'inputs'"),  # no inputs at all
        ({"inputs": []}, "empty"),  # an empty list
        ({"inputs": [{"name": "a"}]}, "'name' and 'dtype'"),  # dtype missing
        ({"inputs": [{"name": "a", "dtype": "complex"}]}, "unknown dtype"),  # bad dtype
        ({"inputs": [{"name": "a", "dtype": "FP32", "shape": "x"}]}, "list of integers"),
        ({"inputs": [{"name": "a", "dtype": "FP32"}, {"name": "a", "dtype": "FP32"}]}, "twice"),
        ({"inputs": "a"}, "list or an object"),
    ],
)
def test_bad_signatures_name_the_problem(data, fragment):
    with pytest.raises(DataError, match=fragment):
        Signature.from_dict(data)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_signature_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_signature_file(bad)


def test_unknown_input_lookup():
    sig = Signature.from_dict({"inputs": {"a": "FP32"}})
    with pytest.raises(DataError, match="no input 'zz'"):
        sig.input("zz")

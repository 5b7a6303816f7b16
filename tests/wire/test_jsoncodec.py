"""JSON helpers shared by the REST codecs: dumping, non-finite floats, parsing, JSON -> tensor."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelcaliper.errors import TargetError, WireError
from modelcaliper.wire.jsoncodec import (
    MAX_DIMS,
    array_from_json,
    dumps,
    dumps_tensors,
    error_body,
    error_message,
    is_b64_object,
    loads,
    nonfinite_json,
    raise_for_error,
    tensor_json,
)
from modelcaliper.wire.tensors import DType, as_tensor


def _dump_named(arrays, *, tokens):
    values = {n: tensor_json(a, tensor=n, strings="auto") for n, a in arrays.items()}
    return dumps_tensors(lambda v: {"t": dict(v)}, values, arrays, nonfinite_tokens=tokens,
                         hint="; try binary")


# ------------------------------------------------------------------------ dumping


def test_numbers_are_written_from_the_array_with_their_own_precision():
    arr = np.array([0.1, 1.5, -2.0], np.float32)
    # float32 values print in their shortest float32 form, not as widened doubles
    assert dumps(tensor_json(arr, tensor="x", strings="auto")) == b"[0.1,1.5,-2.0]"


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array(2.5, np.float64), b"2.5"),  # 0-d tensors become scalars
        (np.arange(6, dtype=np.int8).reshape(2, 3)[:, 1], b"[1,4]"),  # non-contiguous view
        (np.array([1, 2], ">i4"), b"[1,2]"),  # big-endian array
        (np.zeros((2, 0), np.float32), b"[[],[]]"),  # zero-size inner dimension
        (np.array([True, False]), b"[true,false]"),  # booleans
        (np.array([2**64 - 1], np.uint64), b"[18446744073709551615]"),  # full uint64 range
    ],
)
def test_dumps_tensors_writes_any_layout(array, expected):
    body = dumps_tensors(lambda v: v["x"], {"x": tensor_json(array, tensor="x", strings="auto")},
                         {"x": array}, nonfinite_tokens=False)
    assert body == expected


@pytest.mark.parametrize(
    ("values", "strings", "expected"),
    [
        ([b"abc", "é".encode()], "auto", ["abc", "é"]),  # valid UTF-8 stays text
        ([b"\xff", b"ok"], "auto", [{"b64": "/w=="}, "ok"]),  # invalid UTF-8 becomes base64
        ([b"ok", b""], "b64", [{"b64": "b2s="}, {"b64": ""}]),  # always base64 when asked
        ([b""], "text", [""]),  # empty strings survive
    ],
)
def test_bytes_tensors_become_strings_or_b64_objects(values, strings, expected):
    arr = as_tensor(np.array(values, dtype=object))
    assert tensor_json(arr, tensor="s", strings=strings) == expected


def test_bytes_keep_their_shape():
    arr = as_tensor([["a", "b"], ["c", "d"]])
    assert tensor_json(arr, tensor="s", strings="text") == [["a", "b"], ["c", "d"]]
    assert tensor_json(as_tensor(np.array(b"z", dtype=object)), tensor="s", strings="text") == "z"


def test_text_only_style_rejects_invalid_utf8_naming_tensor_and_hint():
    with pytest.raises(WireError) as info:
        tensor_json(as_tensor([b"\xfe"]), tensor="blob", strings="text", hint="; use binary")
    assert info.value.tensor == "blob" and "UTF-8" in str(info.value)
    assert str(info.value).endswith("use binary")


def test_nonfinite_json_writes_tf_serving_tokens_in_place():
    arr = np.array([[1.0, np.nan], [np.inf, -np.inf]], np.float32)
    assert nonfinite_json(arr) == b"[[1.0,NaN],[Infinity,-Infinity]]"
    assert nonfinite_json(np.array(np.nan)) == b"NaN"  # 0-d
    assert nonfinite_json(np.array([np.inf], np.float16)) == b"[Infinity]"  # half precision


def test_dumps_tensors_replaces_or_rejects_non_finite_values():
    arrays = {"a": np.array([np.nan, 1.0]), "b": np.array([1, 2], np.int32)}
    assert _dump_named(arrays, tokens=True) == b'{"t":{"a":[NaN,1.0],"b":[1,2]}}'
    with pytest.raises(WireError) as info:
        _dump_named(arrays, tokens=False)
    assert info.value.tensor == "a" and str(info.value).endswith("; try binary")


def test_a_null_that_is_not_a_number_is_left_alone():
    # the body holds null, but from a parameter, not from a non-finite float
    arrays = {"a": np.array([1.0])}
    body = dumps_tensors(lambda v: {"p": None, "a": v["a"]}, {"a": arrays["a"]}, arrays,
                         nonfinite_tokens=False)
    assert body == b'{"p":null,"a":[1.0]}'


# ------------------------------------------------------------------------ parsing


def test_loads_accepts_tokens_only_when_allowed():
    assert np.isnan(loads(b"[NaN]", nonfinite_tokens=True)[0])
    assert loads(b"[Infinity,-Infinity]", nonfinite_tokens=True) == [np.inf, -np.inf]
    with pytest.raises(WireError) as info:
        loads(b"[NaN]", nonfinite_tokens=False, hint="; use binary")
    assert "NaN" in str(info.value) and str(info.value).endswith("use binary")


@pytest.mark.parametrize(
    "body",
    [
        b"{",  # truncated
        b"[1e400]",  # a number beyond double range
        b"[NaN, 1e400]",  # same, through the token-tolerant fallback
        b"[Nan]",  # a misspelled token
    ],
)
def test_loads_rejects_malformed_json(body):
    with pytest.raises(WireError):
        loads(body, nonfinite_tokens=True)


def test_error_bodies():
    assert loads(error_body("model not found").body, nonfinite_tokens=False) == {
        "error": "model not found"
    }
    assert error_message({"error": "boom"}) == "boom"
    assert error_message({"outputs": []}) is None
    with pytest.raises(TargetError, match="boom"):
        raise_for_error({"error": "boom"})
    raise_for_error({"outputs": []})  # not an error: no exception


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b64": "YQ=="}, True),  # the binary-string form
        ({"b64": 1}, False),  # b64 must hold a string
        ({"b64": "YQ==", "x": 1}, False),  # extra keys make it an ordinary object
        ("b64", False),
    ],
)
def test_is_b64_object(value, expected):
    assert is_b64_object(value) is expected


# ------------------------------------------------------------------------ JSON -> tensor


@pytest.mark.parametrize(
    ("data", "dtype", "expected"),
    [
        ([[1, 2], [3, 4]], DType.INT8, np.array([[1, 2], [3, 4]], np.int8)),  # nested lists
        ([1, 2.5], DType.FP32, np.array([1, 2.5], np.float32)),  # ints allowed for floats
        ([True, False], DType.BOOL, np.array([True, False])),
        ([2**64 - 1], DType.UINT64, np.array([2**64 - 1], np.uint64)),  # beyond int64
        ([0, 2**64 - 1], DType.UINT64, np.array([0, 2**64 - 1], np.uint64)),  # small and huge
        ([-(2**63)], DType.INT64, np.array([-(2**63)], np.int64)),
        (7, DType.INT32, np.array(7, np.int32)),  # a bare value is a 0-d tensor
        ([], DType.FP16, np.zeros(0, np.float16)),  # empty
        ([[], []], DType.INT16, np.zeros((2, 0), np.int16)),  # zero-size inner dimension
        ([0.1], DType.FP16, np.array([0.1], np.float16)),  # rounds to half precision
    ],
)
def test_array_from_json_with_a_dtype(data, dtype, expected):
    out = array_from_json(data, dtype, tensor="x")
    assert out.dtype == expected.dtype and out.shape == expected.shape
    assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("data", "expected_dtype"),
    [
        ([1, 2], DType.INT64),  # integers
        ([2**63], DType.UINT64),  # integers beyond int64
        ([1, 2**63], DType.UINT64),  # small and huge integers together stay exact
        ([1, 2.5], DType.FP64),  # any decimal makes the tensor FP64 (a JSON number is a double)
        ([True], DType.BOOL),
        (["a", {"b64": "YQ=="}], DType.BYTES),  # strings in either form
        ([], DType.FP64),
    ],
)
def test_array_from_json_infers_a_dtype(data, expected_dtype):
    out = array_from_json(data, None, tensor="x", b64=True)
    assert out.dtype == expected_dtype.numpy


def test_strings_and_b64_decode_to_bytes():
    out = array_from_json([["a", {"b64": "/w=="}], ["", "é"]], DType.BYTES, tensor="s", b64=True)
    assert out.tolist() == [[b"a", b"\xff"], [b"", "é".encode()]]


@pytest.mark.parametrize(
    ("data", "dtype", "b64", "fragment"),
    [
        ([[1, 2], [3]], DType.FP32, False, "not rectangular"),  # ragged rows
        ([[1, 2], 3], DType.FP32, False, "not rectangular"),  # list next to a value
        ([1, [2]], DType.FP32, False, "not rectangular"),  # value next to a list
        ([["a"], "b"], DType.BYTES, False, "not rectangular"),  # ragged strings
        ([1.0, "x"], DType.FP32, False, "datatype FP32 but data holds a string"),
        ([1, None], DType.FP32, False, "holds null"),  # JSON null is not NaN
        ([1, True], DType.FP32, False, "holds a boolean"),  # a boolean hiding among numbers
        ([1.5], DType.INT32, False, "floating-point number 1.5"),
        ([1.0], DType.INT32, False, "floating-point number"),  # even an integral decimal
        ([300], DType.INT8, False, "300 is out of range for INT8"),
        ([-1], DType.UINT8, False, "-1 is out of range for UINT8"),
        ([2**64 - 1], DType.INT64, False, "out of range for INT64"),
        ([-1, 2**64 - 1], DType.UINT64, False, "-1 is out of range for UINT64"),
        ([-1, 2**64 - 1], None, False, "out of range for INT64"),  # no integer type fits
        ([1e39], DType.FP32, False, "out of range for FP32"),
        ([70000], DType.FP16, False, "out of range for FP16"),
        ([1, 0], DType.BOOL, False, "datatype BOOL but data holds an integer"),
        ([{"a": 1}], DType.INT64, False, "holds an object"),
        ([1], DType.BYTES, False, "datatype BYTES but data holds an integer"),
        ([{"b64": "YQ=="}], DType.BYTES, False, "a base64 object"),  # b64 not accepted here
        ([{"b64": "not base64!"}], DType.BYTES, True, "invalid base64"),
        (["\ud800"], DType.BYTES, False, "unpaired surrogate"),
        ([1, True], None, False, "boolean among numbers"),  # no dtype: still no mixing
    ],
)
def test_array_from_json_explains_what_is_wrong(data, dtype, b64, fragment):
    with pytest.raises(WireError) as info:
        array_from_json(data, dtype, tensor="feat", b64=b64)
    assert info.value.tensor == "feat"
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("leaf", [1, "a"])
def test_nesting_deeper_than_numpy_handles_is_refused(leaf):
    data = leaf
    for _ in range(MAX_DIMS + 1):
        data = [data]
    with pytest.raises(WireError, match="nested deeper"):
        array_from_json(data, None, tensor="deep")
    for _ in range(40):  # far beyond numpy's own limit too
        data = [data]
    with pytest.raises(WireError, match="nested deeper"):
        array_from_json(data, DType.FP32 if leaf == 1 else DType.BYTES, tensor="deep")


def test_bool_check_can_be_skipped_when_the_body_has_no_booleans():
    # a caller that saw no true/false in the body may skip the search; a boolean would then
    # count as a number, which is why the default is to search
    out = array_from_json([1, 2], DType.FP32, tensor="x", check_bools=False)
    assert out.tolist() == [1.0, 2.0]


def test_round_trip_of_shortest_float_text_is_exact():
    arr = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    back = array_from_json(orjson.loads(dumps(arr)), DType.FP32, tensor="x")
    assert back.tobytes() == arr.tobytes()

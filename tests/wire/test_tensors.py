"""The tensor model: dtype names, normalisation of values into tensors, request/response objects."""

from __future__ import annotations

import numpy as np
import pytest

from modelcaliper.errors import WireError
from modelcaliper.wire.tensors import (
    DType,
    InferRequest,
    InferResponse,
    as_tensor,
    dtype_of,
    parse_dtype,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("float32", DType.FP32),  # numpy spelling
        ("FP32", DType.FP32),  # v2 spelling
        ("DT_FLOAT", DType.FP32),  # TensorFlow spelling
        ("fp16", DType.FP16),  # case does not matter
        ("DT_HALF", DType.FP16),
        ("string", DType.BYTES),  # friendly alias
        ("DT_STRING", DType.BYTES),
        ("bool", DType.BOOL),
        ("uint64", DType.UINT64),
        (9, DType.INT64),  # TensorFlow DataType number
        (DType.INT8, DType.INT8),  # already a DType
    ],
)
def test_parse_dtype_accepts_every_spelling(name, expected):
    assert parse_dtype(name) is expected


@pytest.mark.parametrize("bad", ["complex64", "tensor", "", 999])
def test_parse_dtype_rejects_unknown_names_with_the_choices(bad):
    with pytest.raises(WireError) as info:
        parse_dtype(bad)
    assert str(bad) in str(info.value)


def test_every_dtype_round_trips_through_its_names():
    for d in DType:
        assert parse_dtype(d.v2) is d
        assert parse_dtype(d.tf_name) is d
        assert parse_dtype(d.tf_enum) is d
        if d.np_name:
            assert parse_dtype(d.np_name) is d
            assert d.itemsize == np.dtype(d.np_name).itemsize
        else:
            assert d.itemsize == 0


def test_strings_become_object_arrays_of_bytes():
    arr = as_tensor([["a", "é"], [b"\xff", ""]])
    assert arr.dtype == object and arr.shape == (2, 2)
    assert arr.tolist() == [[b"a", "é".encode()], [b"\xff", b""]]
    assert all(type(v) is bytes for v in arr.flat)


def test_numpy_fixed_width_strings_are_normalised():
    assert as_tensor(np.array(["ab", "c"])).tolist() == [b"ab", b"c"]
    assert as_tensor(np.array([b"ab", b"c"])).tolist() == [b"ab", b"c"]


def test_big_endian_arrays_are_made_little_endian():
    arr = as_tensor(np.arange(3, dtype=">i4"))
    assert arr.dtype.byteorder in ("<", "=")
    assert arr.tolist() == [0, 1, 2]
    assert dtype_of(np.zeros(1, dtype=">f8")) is DType.FP64


def test_explicit_dtype_casts():
    assert as_tensor([1, 2], "FP16").dtype == np.float16
    assert as_tensor(["x"], DType.BYTES).tolist() == [b"x"]


def test_unsupported_numpy_kinds_are_rejected():
    with pytest.raises(WireError):
        as_tensor(np.zeros(2, dtype=np.complex64))


def test_request_normalises_inputs_and_reports_batch_size():
    req = InferRequest({"x": [[1.0, 2.0]] * 3, "s": ["a", "b", "c"]}, model_version=2)
    assert req.inputs["x"].shape == (3, 2)
    assert req.inputs["s"].dtype == object
    assert req.model_version == "2"
    assert req.batch_size == 3
    assert InferRequest({}).batch_size == 0


def test_response_normalises_outputs():
    resp = InferResponse({"score": np.ones((2, 1), np.float32)}, model_version=7)
    assert resp.outputs["score"].dtype == np.float32
    assert resp.model_version == "7"

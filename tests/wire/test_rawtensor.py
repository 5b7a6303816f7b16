"""Raw little-endian tensor buffers and length-prefixed BYTES."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.wire.rawtensor import element_count, from_raw, to_raw
from modelcaliper.wire.tensors import DType, as_tensor


def test_bytes_layout_is_four_byte_little_endian_length_then_data():
    raw = to_raw(as_tensor(["ab", ""]), DType.BYTES)
    assert raw == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_numbers_are_little_endian():
    assert to_raw(np.array([1], np.int32), DType.INT32) == b"\x01\x00\x00\x00"
    assert to_raw(np.array([True, False]), DType.BOOL) == b"\x01\x00"


def test_non_contiguous_input_is_serialized_in_row_major_order():
    arr = np.arange(6, dtype=np.int16).reshape(2, 3).T
    back = from_raw(to_raw(arr, DType.INT16), DType.INT16, arr.shape)
    assert np.array_equal(back, arr)


@pytest.mark.parametrize(
    ("buffer", "dtype", "shape", "error", "fragment"),
    [
        (b"\x00" * 7, DType.FP32, [2], WireError, "needs 8"),  # short numeric buffer
        (b"\x00" * 9, DType.FP32, [2], WireError, "needs 8"),  # long numeric buffer
        (
            b"\x05\x00\x00\x00ab",
            DType.BYTES,
            [1],
            WireError,
            "declares 5 bytes",
        ),  # element overruns
        (b"\x01\x00", DType.BYTES, [1], PayloadTooLargeError, "declares 1 strings"),  # cut length
        (b"\x00\x00\x00\x00xx", DType.BYTES, [1], WireError, "left over"),  # trailing garbage
        (
            b"\x00" * 8,
            DType.BYTES,
            [10**9],
            PayloadTooLargeError,
            "declares",
        ),  # huge declared count
        (b"", DType.FP32, [-1], WireError, "negative"),  # negative dimension
    ],
)
def test_malformed_buffers_are_rejected_naming_the_tensor(buffer, dtype, shape, error, fragment):
    with pytest.raises(error) as info:
        from_raw(buffer, dtype, shape, tensor="feat")
    assert "feat" in str(info.value) and fragment in str(info.value)


def test_element_count():
    assert element_count([]) == 1
    assert element_count([0, 5]) == 0
    assert element_count([2, 3, 4]) == 24


NUMERIC = [d for d in DType if d is not DType.BYTES]


@given(
    dtype=st.sampled_from(NUMERIC),
    shape=st.lists(st.integers(0, 4), max_size=3),
    data=st.data(),
)
def test_numeric_round_trip_is_bit_exact(dtype, shape, data):
    n = element_count(shape)
    raw = data.draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    arr = np.frombuffer(raw, dtype=dtype.numpy).reshape(shape)
    if dtype is DType.BOOL:
        arr = arr.astype(bool)  # any non-zero byte is True; keep canonical 0/1 values
    back = from_raw(to_raw(arr, dtype), dtype, shape)
    assert back.shape == arr.shape
    assert back.tobytes() == np.ascontiguousarray(arr).tobytes()


@given(st.lists(st.binary(max_size=20), max_size=10))
def test_bytes_round_trip(items):
    arr = as_tensor(np.array(items + [b""], dtype=object))
    back = from_raw(to_raw(arr, DType.BYTES), DType.BYTES, arr.shape)
    assert back.tolist() == arr.tolist()

"""Protobuf wire pieces shared by the gRPC codecs: varints, fields, caches, typed values."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given
from hypothesis import strategies as st

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.wire.protos import openinference_pb2 as v2pb
from modelcaliper.wire.protowire import (
    BoundedCache,
    TensorLayout,
    len_field,
    parse_message,
    scalars_to_array,
    varint,
)
from modelcaliper.wire.tensors import DType


@given(st.integers(0, 2**64 - 1) | st.integers(-(2**63), -1))
def test_varint_matches_protobufs_own_encoder(value):
    assert varint(value) == _VarintBytes(value & (2**64 - 1))


@given(st.integers(1, 2**29 - 1), st.binary(max_size=300))
def test_len_field_parses_as_a_bytes_field(number, payload):
    # A message with only unknown fields keeps them; re-serialized they come back unchanged.
    raw = len_field(number, payload)
    assert v2pb.ServerLiveRequest.FromString(raw).SerializeToString() == raw


def test_bounded_cache_starts_over_when_full_and_skips_oversized_byte_keys():
    cache = BoundedCache(max_entries=2, max_key_bytes=4)
    assert cache.put(b"12345", "v") == "v" and not cache  # oversized key: returned, not kept
    cache.put(b"a", 1)
    cache.put(("any", "tuple"), 2)
    cache.put(b"c", 3)  # third entry: the cache empties first
    assert dict(cache) == {b"c": 3}


@pytest.mark.parametrize(
    ("arrays", "fits"),
    [
        ([np.zeros(2, np.float32), np.zeros((1, 3), np.int8)], True),  # same dtypes and shapes
        ([np.zeros(2, ">f4"), np.zeros((1, 3), np.int8)], False),  # byte order differs
        ([np.zeros(3, np.float32), np.zeros((1, 3), np.int8)], False),  # shape differs
        ([np.zeros(2, np.float64), np.zeros((1, 3), np.int8)], False),  # dtype differs
        ([[0.0, 0.0], np.zeros((1, 3), np.int8)], False),  # not an array at all
    ],
)
def test_tensor_layout_fits_only_its_own_dtypes_and_shapes(arrays, fits):
    layout = TensorLayout([np.zeros(2, np.float32), np.zeros((1, 3), np.int8)], [b"", b""], [])
    assert layout.fits(arrays) is fits


def test_tensor_layout_interleaves_prefixes_data_and_string_slots():
    arrays = [np.array([1], np.uint8), np.array([b"s"], object), np.array([2], np.uint8)]
    layout = TensorLayout(arrays, [b"<a>", b"", b"<c>"], [(1, "tpl")])
    parts = layout.parts(arrays, lambda template, array: template.encode() + array[0])
    assert b"".join(parts) == b"<a>\x01tpls<c>\x02"


@pytest.mark.parametrize(
    ("values", "dtype", "carrier", "fragment"),
    [
        ([128], DType.INT8, "int32", "128 does not fit INT8"),  # above the range
        ([-129], DType.INT8, "int32", "-129 does not fit INT8"),  # below the range
        ([65536], DType.UINT16, "uint32", "65536 does not fit UINT16"),  # unsigned overflow
        ([-1], DType.FP16, "int32", "16-bit pattern"),  # negative half bits
        ([1 << 16], DType.FP16, "int32", "16-bit pattern"),  # half bits beyond 16
    ],
)
def test_scalars_that_do_not_fit_the_declared_type_are_rejected(values, dtype, carrier, fragment):
    with pytest.raises(WireError) as info:
        scalars_to_array(values, dtype, carrier, field="int_val", tensor="feat")
    assert "'feat'" in str(info.value) and fragment in str(info.value)


def test_scalars_keep_the_declared_type():
    out = scalars_to_array([0, 255], DType.UINT8, "int32", field="int_val", tensor="t")
    assert out.dtype == np.uint8 and out.tolist() == [0, 255]
    half = scalars_to_array([0x3C00], DType.FP16, "int32", field="half_val", tensor="t")
    assert half.dtype == np.float16 and half.tolist() == [1.0]


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b"\x08", WireError, "malformed ServerLiveResponse"),  # truncated varint
        (b"\x08\x01" * 10, PayloadTooLargeError, "20 bytes exceeds the 8-byte limit"),  # too big
    ],
)
def test_parse_message_errors(body, error, fragment):
    with pytest.raises(error, match=fragment):
        parse_message(v2pb.ServerLiveResponse, body, 8)

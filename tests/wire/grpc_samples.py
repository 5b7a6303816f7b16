"""Tensors and helpers shared by the gRPC codec tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType


def assert_same_tensor(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and bits (element lists for strings)."""
    want = np.asarray(want)
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object and got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


SAMPLES = [
    np.array([True, False, True]),  # bool
    np.array([-128, 0, 127], np.int8),  # int8 limits
    np.array([[-32768, 1], [2, 32767]], np.int16),  # int16, 2-D
    np.array([-(2**31), 2**31 - 1], np.int32),  # int32 limits
    np.array([-(2**63), 2**63 - 1], np.int64),  # int64 limits
    np.array([0, 255], np.uint8),  # uint8 limits
    np.array([0, 65535], np.uint16),  # uint16 limits (TF writes these as int_val)
    np.array([0, 2**32 - 1], np.uint32),  # uint32 limits
    np.array([0, 2**64 - 1], np.uint64),  # uint64 limits
    np.array([1.5, -np.inf, np.nan, 65504], np.float16),  # half with specials
    np.array([[1.25, np.nan], [np.inf, -0.0]], np.float32),  # float with specials and -0
    np.array([np.pi, -np.inf, 5e-324], np.float64),  # double incl. subnormal
    np.array([b"plain", "ünï".encode(), b"\xff\xfe\x00", b""], object),  # non-UTF-8 and empty
    np.zeros((0, 4), np.float32),  # zero-size numbers
    np.empty((2, 0), object),  # zero-size strings
    np.array(7, np.int64),  # scalar number
    np.array(b"only", object),  # scalar string
]
"""One tensor of every dtype, plus strings, zero-size tensors and scalars."""

SAMPLE_IDS = [f"{a.dtype}{list(a.shape)}" for a in SAMPLES]

SIGNATURE = Signature(
    inputs=(TensorSpec("price", DType.FP32, (-1,)), TensorSpec("country", DType.BYTES, (-1, 1)),
            TensorSpec("mask", DType.BOOL, (-1, 8))),
    outputs=(TensorSpec("score", DType.FP32, (-1, 1)),),
)
"""A small signature with numbers, strings and booleans."""


def triton_input(name: str, array: np.ndarray) -> Any:
    """A ``tritonclient.grpc.InferInput`` holding ``array``, as a Triton user builds one."""
    import tritonclient.grpc as tritongrpc
    from tritonclient.utils import np_to_triton_dtype

    tensor = tritongrpc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor

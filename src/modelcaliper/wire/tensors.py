"""The one in-memory form of a model request and response, shared by every wire format.

A tensor is a numpy array. Numbers and booleans use their natural numpy dtype; strings and
raw bytes (TensorFlow's ``DT_STRING``, the v2 protocol's ``BYTES``) are numpy ``object``
arrays whose elements are ``bytes``. ``as_tensor`` normalises anything array-like into that
form, so every codec can rely on it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelcaliper.errors import WireError

__all__ = [
    "DType",
    "InferRequest",
    "InferResponse",
    "as_tensor",
    "dtype_of",
    "parse_dtype",
]


class DType(enum.Enum):
    """A tensor element type, with its name in numpy, TensorFlow and the v2 protocol.

    Each value is ``(numpy dtype or None for bytes, v2 datatype, TensorFlow DataType number,
    TensorFlow DataType name)``.
    """

    BOOL = ("bool", "BOOL", 10, "DT_BOOL")
    UINT8 = ("uint8", "UINT8", 4, "DT_UINT8")
    UINT16 = ("uint16", "UINT16", 17, "DT_UINT16")
    UINT32 = ("uint32", "UINT32", 22, "DT_UINT32")
    UINT64 = ("uint64", "UINT64", 23, "DT_UINT64")
    INT8 = ("int8", "INT8", 6, "DT_INT8")
    INT16 = ("int16", "INT16", 5, "DT_INT16")
    INT32 = ("int32", "INT32", 3, "DT_INT32")
    INT64 = ("int64", "INT64", 9, "DT_INT64")
    FP16 = ("float16", "FP16", 19, "DT_HALF")
    FP32 = ("float32", "FP32", 1, "DT_FLOAT")
    FP64 = ("float64", "FP64", 2, "DT_DOUBLE")
    BYTES = (None, "BYTES", 7, "DT_STRING")

    def __init__(self, np_name: str | None, v2: str, tf_enum: int, tf_name: str) -> None:
        self.np_name = np_name
        self.v2 = v2
        self.tf_enum = tf_enum
        self.tf_name = tf_name
        # Built once: decoders ask for these per tensor, and np.dtype() is not free.
        self._numpy = np.dtype(object) if np_name is None else np.dtype(np_name).newbyteorder("<")
        self._itemsize = 0 if np_name is None else self._numpy.itemsize

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype of arrays of this type (``object`` for BYTES), little-endian."""
        return self._numpy

    @property
    def itemsize(self) -> int:
        """Bytes per element in a raw little-endian buffer (0 for variable-length BYTES)."""
        return self._itemsize

    @property
    def is_float(self) -> bool:
        """True for the floating-point types."""
        return self in (DType.FP16, DType.FP32, DType.FP64)


_BY_NAME: dict[str, DType] = {}
for _d in DType:
    for _alias in (_d.name, _d.v2, _d.tf_name, _d.np_name or "bytes"):
        _BY_NAME[_alias.lower()] = _d
_BY_NAME.update(
    {
        "string": DType.BYTES,
        "str": DType.BYTES,
        "object": DType.BYTES,
        "half": DType.FP16,
        "float": DType.FP32,
        "double": DType.FP64,
        "tensor(float)": DType.FP32,
    }
)
_BY_TF_ENUM = {d.tf_enum: d for d in DType}
_BY_NUMPY = {np.dtype(d.np_name): d for d in DType if d.np_name is not None}


def parse_dtype(name: str | int | DType) -> DType:
    """Look up a dtype by any of its names (``float32``, ``FP32``, ``DT_FLOAT``) or TF number."""
    if isinstance(name, DType):
        return name
    if isinstance(name, int):
        try:
            return _BY_TF_ENUM[name]
        except KeyError:
            raise WireError(f"unsupported TensorFlow DataType number {name}") from None
    found = _BY_NAME.get(str(name).strip().lower())
    if found is None:
        known = ", ".join(d.v2 for d in DType)
        raise WireError(f"unknown dtype '{name}'; expected one of {known}")
    return found


def dtype_of(array: np.ndarray) -> DType:
    """The DType of a normalised array (see ``as_tensor``)."""
    kind = array.dtype
    if kind.kind in "OSU":
        return DType.BYTES
    found = (
        _BY_NUMPY.get(kind.newbyteorder("="))
        if kind.byteorder not in ("=", "|")
        else _BY_NUMPY.get(kind)
    )
    if found is None:
        raise WireError(f"numpy dtype {kind} has no wire equivalent")
    return found


def _to_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.str_):
        return str(value).encode("utf-8")
    raise WireError(f"expected str or bytes in a string tensor, got {type(value).__name__}")


def as_tensor(value: Any, dtype: DType | str | None = None) -> np.ndarray:
    """Normalise ``value`` into a tensor array: native numeric dtype, or object array of bytes."""
    target = parse_dtype(dtype) if dtype is not None else None
    if target is DType.BYTES or (target is None and _looks_textual(value)):
        arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if arr.dtype != object or (arr.size and not all(type(v) is bytes for v in arr.flat)):
            out = np.empty(arr.shape, dtype=object)
            flat_in, flat_out = arr.reshape(-1), out.reshape(-1)
            for i in range(flat_in.size):
                flat_out[i] = _to_bytes(flat_in[i])
            return out
        return arr
    if target is None:
        arr = np.asarray(value)
        dtype_of(arr)  # raises for unsupported kinds
    else:
        arr = np.asarray(value, dtype=target.numpy)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def _looks_textual(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype == object or value.dtype.kind in "SU"
    if isinstance(value, (str, bytes)):
        return True
    first = value
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    return isinstance(first, (str, bytes))


def _normalise_tensors(
    tensors: Mapping[str, Any] | Iterable[tuple[str, Any]],
) -> dict[str, np.ndarray]:
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    return {str(name): as_tensor(value) for name, value in items}


@dataclass
class InferRequest:
    """One model request: named input tensors plus the addressing every protocol needs.

    ``wire`` holds protocol-specific choices read from a decoded request (for example TF
    Serving's row vs columnar format, or which v2 outputs asked for binary data) so that the
    response can be encoded the way that client expects.
    """

    inputs: dict[str, np.ndarray]
    model_name: str = "model"
    model_version: str | None = None
    version_label: str | None = None
    signature_name: str | None = None
    outputs: list[str] | None = None
    request_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    wire: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = _normalise_tensors(self.inputs)
        if self.model_version is not None:
            self.model_version = str(self.model_version)

    @property
    def batch_size(self) -> int:
        """Rows in this request: the leading dimension of its first input (1 for scalars)."""
        for arr in self.inputs.values():
            return int(arr.shape[0]) if arr.ndim else 1
        return 0


@dataclass
class InferResponse:
    """One model response: named output tensors and the model that produced them."""

    outputs: dict[str, np.ndarray]
    model_name: str = "model"
    model_version: str | None = None
    request_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.outputs = _normalise_tensors(self.outputs)
        if self.model_version is not None:
            self.model_version = str(self.model_version)

"""Protobuf wire-format pieces shared by the two gRPC codecs.

Protobuf messages concatenate: serializing fields one at a time and joining the bytes gives a
message any protobuf library parses. The codecs rely on that to build requests from cached,
pre-serialized prefixes (everything about a tensor except its data) followed by the tensor's
own buffer, instead of copying every value into a message object first. Decoding goes the
other way through the generated classes, and ``scalars_to_array`` turns their repeated
scalar fields (TF's ``*_val``, v2's typed ``contents``) into arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.wire.tensors import DType

__all__ = [
    "BoundedCache",
    "TensorLayout",
    "len_field",
    "len_header",
    "parse_message",
    "scalars_to_array",
    "varint",
]

_SMALL = [bytes([i]) for i in range(128)]
_WIRE_LEN = 2

M = TypeVar("M", bound=Message)


def varint(value: int) -> bytes:
    """The base-128 varint encoding of ``value`` (negative numbers as 64-bit two's complement)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if 0 < value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_LEN_KEYS = [varint((number << 3) | _WIRE_LEN) for number in range(16)]


def len_header(field_number: int, length: int) -> bytes:
    """The key and length that open a length-delimited field of ``length`` bytes."""
    key = _LEN_KEYS[field_number] if field_number < 16 else varint((field_number << 3) | _WIRE_LEN)
    return key + (_SMALL[length] if 0 <= length < 0x80 else varint(length))


def len_field(field_number: int, payload: bytes) -> bytes:
    """A whole length-delimited field: key, length, payload."""
    return len_header(field_number, len(payload)) + payload


class BoundedCache(dict[Any, Any]):
    """A dict that starts over once it holds ``max_entries`` items, so it cannot grow forever.

    Keys made of received bytes longer than ``max_key_bytes`` are not kept: a client could
    otherwise park megabytes in the cache with a few odd messages.
    """

    def __init__(self, max_entries: int = 4096, max_key_bytes: int = 1024) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_key_bytes = max_key_bytes

    def put(self, key: Any, value: Any) -> Any:
        """Store ``value`` under ``key`` (unless the key is oversized bytes) and return it."""
        if isinstance(key, bytes) and len(key) > self.max_key_bytes:
            return value
        if len(self) >= self.max_entries:
            self.clear()
        self[key] = value
        return value


_DTYPE = attrgetter("dtype")
_SHAPE = attrgetter("shape")


class TensorLayout:
    """The data-free part of one set of tensors' encoding, cached per set of names.

    ``prefixes[i]`` is every byte that goes before tensor ``i``'s raw buffer. Tensors whose
    bytes depend on their values (strings) have an empty prefix and a ``(index, template)``
    entry in ``strings``; the codec's string encoder writes all of their bytes. ``header``
    holds anything else the codec derives from the names, dtypes and shapes alone. A layout
    only fits arrays with the dtypes and shapes it was built from.
    """

    __slots__ = ("dtypes", "header", "prefixes", "shapes", "strings")

    def __init__(self, arrays: Sequence[np.ndarray], prefixes: list[bytes],
                 strings: list[tuple[int, Any]], header: bytes = b"") -> None:
        self.dtypes = [a.dtype for a in arrays]
        self.shapes = [a.shape for a in arrays]
        self.prefixes = prefixes
        self.strings = strings
        self.header = header

    def fits(self, arrays: list[Any]) -> bool:
        """True if ``arrays`` have this layout's dtypes (byte order included) and shapes."""
        try:
            dtypes, shapes = list(map(_DTYPE, arrays)), list(map(_SHAPE, arrays))
        except AttributeError:  # something that is not an array: normalise it first
            return False
        return dtypes == self.dtypes and shapes == self.shapes

    def parts(
        self, arrays: list[np.ndarray], encode_strings: Callable[[Any, np.ndarray], bytes]
    ) -> list[bytes]:
        """Prefixes and data, interleaved, ready for ``b"".join``."""
        out = [b""] * (2 * len(arrays))
        out[0::2] = self.prefixes
        out[1::2] = [array.tobytes() for array in arrays]
        for index, template in self.strings:
            out[2 * index + 1] = encode_strings(template, arrays[index])
        return out


def parse_message(cls: type[M], body: bytes, max_bytes: int) -> M:
    """Parse ``body`` as a ``cls`` message; too-large and malformed bodies raise ``WireError``."""
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"{cls.__name__} of {len(body)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        return cls.FromString(body)
    except DecodeError as exc:
        raise WireError(f"malformed {cls.__name__}: {exc}") from None


# Narrow integer types travel in a wider repeated field; values must fit the declared type.
_NARROW = (DType.INT8, DType.INT16, DType.UINT8, DType.UINT16)


def scalars_to_array(
    values: Sequence[Any],
    dtype: DType,
    carrier: np.dtype[Any] | str,
    *,
    field: str,
    tensor: str,
) -> np.ndarray:
    """A 1-D array of ``dtype`` from a repeated scalar field whose elements are ``carrier``.

    ``carrier`` is the field's own type (int32 for TF's ``int_val`` and ``half_val``, uint32
    for v2's ``uint_contents``...). Integers that do not fit ``dtype`` and half-precision bit
    patterns beyond 16 bits raise ``WireError``.
    """
    n = len(values)
    if dtype is DType.BYTES:
        out = np.empty(n, dtype=object)
        out[:] = list(values)
        return out
    wide = np.fromiter(values, dtype=carrier, count=n)
    if dtype is DType.FP16:
        if n and (int(wide.min()) < 0 or int(wide.max()) > 0xFFFF):
            raise WireError(f"{field} holds a value that is not a 16-bit pattern", tensor=tensor)
        return wide.astype(np.uint16).view(DType.FP16.numpy)
    if dtype in _NARROW and n:
        info = np.iinfo(dtype.numpy)
        low, high = int(wide.min()), int(wide.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise WireError(f"{field} value {bad} does not fit {dtype.v2}", tensor=tensor)
    if wide.dtype != dtype.numpy:
        wide = wide.astype(dtype.numpy)
    return wide

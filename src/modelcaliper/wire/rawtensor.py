"""Raw tensor buffers: row-major little-endian elements, or length-prefixed byte strings.

This is the layout shared by the v2 protocol's binary data extension (REST) and its
``raw_input_contents`` / ``raw_output_contents`` (gRPC), and, for numbers, by TensorFlow's
``tensor_content``. BOOL is one byte per element; BYTES elements are each preceded by their
length as a 4-byte little-endian unsigned integer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.wire.tensors import DType

__all__ = ["element_count", "from_raw", "to_raw"]

_LEN = struct.Struct("<I")


class _PrefixedCache(dict):  # type: ignore[type-arg]
    """``bytes -> length prefix + bytes``, filled on demand; short values only, bounded size."""

    max_entries = 65536
    max_value_bytes = 256

    def __missing__(self, key: bytes) -> bytes:
        value = _LEN.pack(len(key)) + key
        if len(key) <= self.max_value_bytes:
            if len(self) >= self.max_entries:
                self.clear()
            self[key] = value
        return value


_PREFIXED = _PrefixedCache()


def element_count(shape: Sequence[int], *, tensor: str | None = None) -> int:
    """Number of elements of ``shape``; rejects negative dimensions."""
    count = 1
    for dim in shape:
        if dim < 0:
            raise WireError(f"shape {list(shape)} has a negative dimension", tensor=tensor)
        count *= int(dim)
    return count


def to_raw(array: np.ndarray, dtype: DType) -> bytes:
    """Serialize ``array`` (already normalised, see ``as_tensor``) into a raw buffer."""
    if dtype is DType.BYTES:
        items = array.reshape(-1).tolist()
        if not items:
            return b""
        # Each element maps to its length-prefixed form through a bounded dict; categorical
        # features repeat a small vocabulary, so most lookups are C-level hits and the join
        # is the only other per-element work.
        return b"".join(map(_PREFIXED.__getitem__, items))
    target = dtype.numpy
    if array.dtype != target or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=target)
    return array.tobytes()


def from_raw(
    buffer: bytes | memoryview,
    dtype: DType,
    shape: Sequence[int],
    *,
    tensor: str | None = None,
) -> np.ndarray:
    """Parse a raw buffer into an array of ``shape``; the buffer must match it exactly.

    Numeric arrays are zero-copy views over ``buffer`` (read-only when it is ``bytes``).
    """
    count = element_count(shape, tensor=tensor)
    if dtype is not DType.BYTES:
        expected = count * dtype.itemsize
        if len(buffer) != expected:
            raise WireError(
                f"raw data has {len(buffer)} bytes but shape {list(shape)} of {dtype.v2} "
                f"needs {expected}",
                tensor=tensor,
            )
        return np.frombuffer(buffer, dtype=dtype.numpy).reshape(tuple(shape))
    # Each element needs at least its 4-byte length, so a declared count beyond len/4 is a
    # lie; checking first keeps a tiny body from making us allocate a huge object array.
    if count > len(buffer) // 4:
        raise PayloadTooLargeError(
            f"shape {list(shape)} declares {count} strings but the raw data holds "
            f"{len(buffer)} bytes",
            tensor=tensor,
        )
    if not count:
        if len(buffer):
            raise WireError(
                f"raw BYTES data has {len(buffer)} bytes left over after 0 elements", tensor=tensor
            )
        return np.empty(tuple(shape), dtype=object)
    out = _split_uniform(buffer, count)
    if out is None:
        out = np.empty(count, dtype=object)
        out[:] = _split_fast(buffer, count) or _split_checked(buffer, count, tensor)
    return out.reshape(tuple(shape))


def _split_uniform(buffer: bytes | memoryview, count: int) -> np.ndarray | None:
    """Elements when all have the same length (fixed-width codes, ids), else None."""
    size, rest = divmod(len(buffer), count)
    if rest or size < 4:
        return None
    # Strided views over the buffer: every size-th 4 bytes are the lengths, the bytes after
    # each are its payload; a void view turns each payload into one bytes object, in C.
    lengths = np.ndarray((count,), "<u4", buffer, 0, (size,))
    if not (lengths == size - 4).all():
        return None
    if size == 4:
        out = np.empty(count, dtype=object)
        out[:] = b""
        return out
    return np.ndarray((count,), f"V{size - 4}", buffer, 4, (size,)).astype(object)


def _split_fast(buffer: bytes | memoryview, count: int) -> list[bytes] | None:
    """Elements of a well-formed buffer, or None so the checked parser can name the fault."""
    data = bytes(buffer)
    unpack = _LEN.unpack_from
    out: list[bytes] = [b""] * count
    offset = 0
    try:
        for i in range(count):
            start = offset + 4
            offset = start + unpack(data, offset)[0]
            out[i] = data[start:offset]
    except struct.error:
        return None
    return out if offset == len(data) else None


def _split_checked(buffer: bytes | memoryview, count: int, tensor: str | None) -> list[bytes]:
    """Parse element by element, raising a WireError that says where the buffer is broken."""
    out: list[bytes] = []
    view = memoryview(buffer)
    offset = 0
    end = len(view)
    unpack = _LEN.unpack_from
    for i in range(count):
        if offset + 4 > end:
            raise WireError(f"raw BYTES data ends inside the length of element {i}", tensor=tensor)
        (length,) = unpack(view, offset)
        offset += 4
        if offset + length > end:
            raise WireError(
                f"raw BYTES element {i} declares {length} bytes but only {end - offset} remain",
                tensor=tensor,
            )
        out.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != end:
        raise WireError(
            f"raw BYTES data has {end - offset} bytes left over after {count} elements",
            tensor=tensor,
        )
    return out

"""JSON helpers shared by the TF Serving REST and v2 REST codecs.

Dumping goes through ``orjson`` with numpy support, so numeric tensors are written straight
from their buffers. orjson writes NaN and infinities as ``null``; rather than scanning every
float tensor before each dump, a body is dumped first and only re-examined when it contains
``null`` at all (``dumps_tensors``). Then each non-finite tensor is either rejected or
rewritten with the ``NaN`` / ``Infinity`` / ``-Infinity`` tokens that TF Serving speaks.

Parsing is orjson too, with a slower fallback (``json``) that accepts those tokens when a
format allows them. ``array_from_json`` turns parsed nested lists into a tensor of a wanted
dtype and explains exactly what is wrong when it cannot: a ragged nesting, a string in a
number tensor, a boolean in an integer tensor, a value out of range, bad base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import orjson

from modelcaliper.errors import TargetError, WireError
from modelcaliper.wire.base import Encoded
from modelcaliper.wire.tensors import DType

__all__ = [
    "JSON_HEADERS",
    "MAX_DIMS",
    "StringStyle",
    "array_from_json",
    "dumps",
    "dumps_tensors",
    "error_body",
    "error_message",
    "is_b64_object",
    "loads",
    "nonfinite_json",
    "raise_for_error",
    "tensor_json",
]

JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
"""Headers of a plain JSON body."""

_INFERRED = {"b": DType.BOOL, "i": DType.INT64, "u": DType.UINT64, "f": DType.FP64}
_FLOAT_MAX = {d: float(np.finfo(d.numpy).max) for d in (DType.FP16, DType.FP32)}

MAX_DIMS = 32
"""Most dimensions a decoded tensor may have (numpy's own limit for many operations)."""

StringStyle = Literal["text", "b64", "auto"]
"""How BYTES elements are written: JSON strings only, ``{"b64": ...}`` only, or strings
when valid UTF-8 and ``{"b64": ...}`` otherwise."""

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_TOKENS = {"nan": b"NaN", "inf": b"Infinity", "-inf": b"-Infinity"}


def dumps(document: Any) -> bytes:
    """Serialize ``document`` (numpy arrays and scalars allowed) without any non-finite check."""
    return orjson.dumps(document, option=_OPTIONS)


def tensor_json(array: np.ndarray, *, tensor: str, strings: StringStyle, hint: str = "") -> Any:
    """A value orjson can write for ``array``: the array itself for numbers, nested lists for BYTES.

    ``hint`` is appended to the error raised for bytes that ``strings="text"`` cannot carry.
    Arrays that orjson refuses (not C-contiguous, not native byte order) are left as they
    are here and copied by ``dumps_tensors`` only if orjson actually refuses them.
    """
    if array.dtype.hasobject:
        return _bytes_json(array, tensor, strings, hint)
    if array.ndim == 0:
        return array[()]  # orjson writes numpy scalars but not 0-d arrays
    return array


def _bytes_json(array: np.ndarray, tensor: str, strings: StringStyle, hint: str) -> Any:
    flat = array.reshape(-1).tolist()
    if strings == "b64":
        values: list[Any] = [{"b64": base64.b64encode(b).decode("ascii")} for b in flat]
    else:
        try:
            values = [b.decode("utf-8") for b in flat]
        except UnicodeDecodeError:
            values = [_text_or_b64(b, tensor, strings, hint) for b in flat]
    if array.ndim == 1:
        return values
    if array.ndim == 0:
        return values[0]
    nested = np.empty(len(values), dtype=object)
    nested[:] = values
    return nested.reshape(array.shape).tolist()


def _text_or_b64(value: bytes, tensor: str, strings: StringStyle, hint: str) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        if strings == "text":
            raise WireError(f"holds bytes that are not valid UTF-8{hint}", tensor=tensor) from None
        return {"b64": base64.b64encode(value).decode("ascii")}


def nonfinite_json(array: np.ndarray) -> bytes:
    """JSON text of a float array with ``NaN``, ``Infinity`` and ``-Infinity`` tokens."""
    array = np.asarray(array)
    text = dumps(array[()] if array.ndim == 0 else np.ascontiguousarray(array))
    flat = array.reshape(-1)
    bad = flat[~np.isfinite(flat)]
    # orjson writes each non-finite element as null, in C order, and a number array holds
    # no other null: the k-th "null" is the k-th non-finite element.
    parts = text.split(b"null")
    tokens = [_TOKENS["nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")] for v in bad]
    out = [parts[0]]
    for token, part in zip(tokens, parts[1:], strict=True):
        out.append(token)
        out.append(part)
    return b"".join(out)


def dumps_tensors(
    build: Callable[[Mapping[str, Any]], Any],
    values: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    nonfinite_tokens: bool,
    hint: str = "",
) -> bytes:
    """Dump ``build(values)``, then handle non-finite floats of ``arrays`` if orjson hid any.

    ``values[name]`` is what ``build`` places for tensor ``name``; when a float tensor holds
    NaN or an infinity it is either rejected (``nonfinite_tokens=False``, the error ends with
    ``hint``) or replaced by token text.
    """
    try:
        body = dumps(build(values))
    except orjson.JSONEncodeError:
        # orjson only writes C-contiguous, native-order arrays: copy the others and retry.
        values = {k: _writable(v) for k, v in values.items()}
        try:
            body = dumps(build(values))
        except orjson.JSONEncodeError as exc:
            raise WireError(f"cannot write the message as JSON: {exc}") from None
    if b"null" not in body:
        return body
    fixed = dict(values)
    for name, array in arrays.items():
        if array.dtype.kind != "f" or np.isfinite(array).all():
            continue
        if not nonfinite_tokens:
            raise WireError(f"holds NaN or infinity, which JSON cannot carry{hint}", tensor=name)
        fixed[name] = orjson.Fragment(nonfinite_json(array))
    return dumps(build(fixed))


def _writable(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not (value.flags.c_contiguous and value.dtype.isnative):
        return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of the range of a double")
    return value


def loads(body: bytes | memoryview, *, nonfinite_tokens: bool, hint: str = "") -> Any:
    """Parse a JSON body; ``nonfinite_tokens`` also accepts ``NaN``, ``Infinity``, ``-Infinity``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raw = bytes(body)
        has_tokens = b"NaN" in raw or b"Infinity" in raw
        if has_tokens and not nonfinite_tokens:
            raise WireError(f"JSON body holds a NaN or Infinity token{hint}") from None
        if not has_tokens:
            raise WireError(f"body is not valid JSON: {exc}") from None
    try:
        return json.loads(raw, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"body is not valid JSON: {exc}") from None


def is_b64_object(value: Any) -> bool:
    """True for ``{"b64": "<string>"}``, TF Serving's spelling of a binary string."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def error_message(document: Any) -> str | None:
    """The server's message if ``document`` is an error body ``{"error": "..."}``, else None."""
    if type(document) is dict and "error" in document:
        return str(document["error"])
    return None


def raise_for_error(document: Any) -> None:
    """Raise ``TargetError`` carrying the server's message if ``document`` is an error body."""
    message = error_message(document)
    if message is not None:
        raise TargetError(f"server answered with an error: {message}")


def error_body(message: str) -> Encoded:
    """An error response ``{"error": message}``, as both REST protocols send it."""
    return Encoded(dumps({"error": message}), JSON_HEADERS)


# --------------------------------------------------------------------------- decoding


def _shape_and_leaves(data: Any, tensor: str) -> tuple[tuple[int, ...], list[Any]]:
    """Walk nested lists level by level: the shape and the leaves, or where it is ragged."""
    shape: list[int] = []
    level = [data]
    while level and type(level[0]) is list:
        width = len(level[0])
        for i, item in enumerate(level):
            if type(item) is not list or len(item) != width:
                got = f"{len(item)} items" if type(item) is list else "a single value"
                raise WireError(
                    f"data is not rectangular: at depth {len(shape)}, entry {i} has {got} "
                    f"where entry 0 has {width}",
                    tensor=tensor,
                )
        shape.append(width)
        if len(shape) > MAX_DIMS:
            raise WireError(f"data is nested deeper than {MAX_DIMS} dimensions", tensor=tensor)
        level = [x for item in level for x in item]
    for item in level:
        if type(item) is list:
            raise WireError(
                f"data is not rectangular: lists and single values mixed at depth {len(shape)}",
                tensor=tensor,
            )
    return tuple(shape), level


_KIND_NAMES = {
    type(None): "null",
    bool: "a boolean",
    str: "a string",
    int: "an integer",
    float: "a floating-point number",
}


def _kind_name(value: Any) -> str:
    if type(value) is dict:
        return "a base64 object" if is_b64_object(value) else "an object"
    return _KIND_NAMES.get(type(value), f"a {type(value).__name__}")


def _decode_string(value: Any, tensor: str, b64: bool) -> bytes:
    if type(value) is str:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise WireError("holds a string with an unpaired surrogate", tensor=tensor) from None
    if b64 and is_b64_object(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise WireError(f"holds invalid base64 {value['b64'][:40]!r}", tensor=tensor) from None
    raise WireError(f"datatype BYTES but data holds {_kind_name(value)}", tensor=tensor)


def _bytes_array(data: Any, tensor: str, b64: bool) -> np.ndarray:
    shape, leaves = _shape_and_leaves(data, tensor)
    out = np.empty(len(leaves), dtype=object)
    if b64 or not all(type(v) is str for v in leaves):
        out[:] = [_decode_string(v, tensor, b64) for v in leaves]
    else:
        try:
            out[:] = [v.encode("utf-8") for v in leaves]
        except UnicodeEncodeError:
            raise WireError("holds a string with an unpaired surrogate", tensor=tensor) from None
    return out.reshape(shape)


def _first_leaf(data: Any) -> Any:
    while type(data) is list and data:
        data = data[0]
    return data


def _diagnose(data: Any, target: DType | None, tensor: str) -> WireError:
    """Explain why ``data`` cannot become a ``target`` tensor (only called once it failed)."""
    _, leaves = _shape_and_leaves(data, tensor)  # raises first if the nesting is ragged
    holds = f"datatype {target.v2} but data holds" if target is not None else "data holds"
    integral = target is not None and target.numpy.kind in "iu"
    for value in leaves:
        kind = type(value)
        if target is DType.BOOL and kind is not bool:
            return WireError(f"{holds} {_kind_name(value)}", tensor=tensor)
        if target is not DType.BOOL and kind is bool:
            among = "" if target is not None else " among numbers"
            return WireError(f"{holds} a boolean{among}", tensor=tensor)
        if kind not in (bool, int, float):
            return WireError(f"{holds} {_kind_name(value)}", tensor=tensor)
        if integral and kind is float:
            return WireError(f"{holds} a floating-point number {value!r}", tensor=tensor)
    if integral and target is not None:
        info = np.iinfo(target.numpy)
        for value in leaves:
            if type(value) is int and not info.min <= value <= info.max:
                return WireError(f"value {value} is out of range for {target.v2}", tensor=tensor)
    wanted = target.v2 if target is not None else "numbers"
    return WireError(f"data cannot be read as {wanted}", tensor=tensor)


def array_from_json(
    data: Any,
    dtype: DType | None,
    *,
    tensor: str,
    b64: bool = False,
    check_bools: bool = True,
) -> np.ndarray:
    """Turn parsed JSON (a value or nested lists) into a tensor of ``dtype``.

    Without a dtype it is inferred: strings give BYTES, booleans BOOL, integers INT64 (UINT64
    beyond its range) and any other number FP64, since a JSON number is a double. ``b64``
    accepts ``{"b64": ...}`` for strings. ``check_bools=False`` skips the search for booleans
    hidden in a number tensor, which callers may do when the body holds no ``true``/``false``.
    """
    if dtype is DType.BYTES or (dtype is None and type(_first_leaf(data)) in (str, dict)):
        return _bytes_array(data, tensor, b64)
    try:
        raw = np.array(data)
    except (ValueError, OverflowError, TypeError):
        raise _diagnose(data, dtype, tensor) from None
    if raw.ndim > MAX_DIMS:
        raise WireError(f"data is nested deeper than {MAX_DIMS} dimensions", tensor=tensor)
    kind = raw.dtype.kind
    if kind not in "biuf":
        raise _diagnose(data, dtype, tensor)
    # numpy widens a mix of small and huge (beyond int64) integers to float64: re-read those
    if kind == "f" and raw.size and dtype is not None and dtype.numpy.kind in "iub":
        exact = _exact_integers(data, dtype, tensor) if dtype is not DType.BOOL else None
        if exact is None:
            raise _diagnose(data, dtype, tensor)
        return exact
    if (
        kind == "f"
        and raw.size
        and dtype is None
        and type(_first_leaf(data)) is int  # cheap: widened integers start with an integer
        and not -(2.0**63) <= raw.min() <= raw.max() < 2.0**63
    ):
        exact = _exact_integers(data, None, tensor)
        if exact is not None:
            return exact
    wanted = dtype or _INFERRED[kind]
    target = wanted.numpy
    if raw.size == 0:
        return raw.astype(target)
    if (kind == "b") != (target.kind == "b") or (check_bools and kind != "b" and _has_bool(data)):
        raise _diagnose(data, dtype, tensor)
    if target.kind in "iu":
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise _diagnose(data, dtype, tensor)
    elif target.itemsize < raw.dtype.itemsize:  # FP16/FP32 from doubles: may overflow
        limit = _FLOAT_MAX[wanted]
        if not -limit <= raw.min() <= raw.max() <= limit:  # false for NaN and infinities too
            return _narrow_floats(raw, wanted, tensor)
    return raw.astype(target, copy=False)


def _narrow_floats(raw: np.ndarray, wanted: DType, tensor: str) -> np.ndarray:
    """Cast doubles holding NaN, infinities or huge values down, refusing real overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = raw.astype(wanted.numpy)
    if (np.isinf(out) & np.isfinite(raw)).any():
        raise WireError(f"a value is out of range for {wanted.v2}", tensor=tensor)
    return out


def _exact_integers(data: Any, dtype: DType | None, tensor: str) -> np.ndarray | None:
    """Re-read integer data that numpy widened to float64 (it does so when values below zero
    or below 2**63 meet values beyond int64); None if the data really holds decimals."""
    shape, leaves = _shape_and_leaves(data, tensor)
    if not all(type(v) is int for v in leaves):
        return None
    wanted = dtype or (DType.UINT64 if min(leaves) >= 0 else DType.INT64)
    try:
        return np.array(leaves, dtype=wanted.numpy).reshape(shape)
    except OverflowError:
        raise _diagnose(data, wanted, tensor) from None


def _has_bool(data: Any) -> bool:
    if type(data) is bool:
        return True
    if type(data) is not list:
        return False
    if data and type(data[0]) is list:
        return any(_has_bool(item) for item in data)
    return any(type(v) is bool for v in data)

"""TF Serving's REST predict API in row and columnar format (paths and metadata re-exported).

Requests go to ``/v1/models/{name}[/versions/{v}|/labels/{l}]:predict`` as either

* row format, ``{"instances": [...]}``: one entry per row, an object keyed by input name
  when there are several inputs and the bare row value when there is one; or
* columnar format, ``{"inputs": {...}}``: one full tensor per input name, or the bare
  tensor when there is one input.

The answer mirrors the request: ``{"predictions": ...}`` for rows, ``{"outputs": ...}`` for
columns, with the names left out when the model has a single output; errors are
``{"error": "..."}``. Strings are JSON strings when they are valid UTF-8 and
``{"b64": "..."}`` otherwise, and always base64 for tensors whose name ends in ``_bytes``.
Floats may be the non-standard tokens ``NaN``, ``Infinity`` and ``-Infinity``, which TF
Serving reads and writes; this codec does both.

JSON carries no dtypes: give the codec the model's ``Signature`` to decode tensors with the
model's dtypes and to name a bare (unnamed) input or output. Without one, numbers decode as
INT64 or FP64 and unnamed tensors are called ``inputs`` / ``outputs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from itertools import chain, groupby
from typing import Any, Literal

import numpy as np
import orjson

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES, Encoded, Headers
from modelcaliper.wire.jsoncodec import (
    JSON_HEADERS,
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
from modelcaliper.wire.tensors import InferRequest, InferResponse
from modelcaliper.wire.tfserving_rest_meta import (
    ModelPath,
    ModelVersionStatus,
    decode_model_metadata,
    decode_model_status,
    encode_model_metadata,
    encode_model_status,
    model_path,
    parse_model_path,
    predict_path,
)

__all__ = [
    "DEFAULT_INPUT_NAME",
    "DEFAULT_OUTPUT_NAME",
    "ModelPath",
    "ModelVersionStatus",
    "TFServingRestCodec",
    "decode_model_metadata",
    "decode_model_status",
    "encode_model_metadata",
    "encode_model_status",
    "model_path",
    "parse_model_path",
    "predict_path",
]

DEFAULT_INPUT_NAME = "inputs"
"""Name given to a bare (unnamed) input when no signature tells its real name."""
DEFAULT_OUTPUT_NAME = "outputs"
"""Name given to a bare (unnamed) output when no signature tells its real name."""

Format = Literal["rows", "columnar"]
_OBJECT = np.dtype(object).num
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')


class TFServingRestCodec:
    """TF Serving's REST predict API, in row (``instances``) or columnar (``inputs``) format."""

    transport: Literal["http", "grpc"] = "http"

    def __init__(
        self,
        format: Format = "rows",
        *,
        signature: Signature | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if format not in ("rows", "columnar"):
            raise WireError(f"TF Serving REST format must be 'rows' or 'columnar', got {format!r}")
        self.format: Format = format
        self.signature = signature
        self.max_body_bytes = max_body_bytes
        self.name = f"tfserving-rest {format}"

    # ------------------------------------------------------------------ requests

    def path(self, request: InferRequest) -> str:
        """The URL path ``request`` is posted to."""
        return predict_path(request.model_name, request.model_version, request.version_label)

    def encode_request(self, request: InferRequest) -> Encoded:
        """Serialize a predict request in this codec's format."""
        if not request.inputs:
            raise WireError("a predict request needs at least one input")
        head = {"signature_name": request.signature_name} if request.signature_name else {}
        key = "instances" if self.format == "rows" else "inputs"
        return Encoded(_encode_tensors(request.inputs, key, self.format, head), JSON_HEADERS)

    def decode_request(
        self, body: bytes, headers: Headers | None = None, *, path: str | None = None
    ) -> InferRequest:
        """Parse a predict request; ``path`` (the URL path) supplies model, version and label."""
        where = parse_model_path(path) if path is not None else None
        if where is not None and where.verb != "predict":
            raise WireError(f"path {path!r} is not a :predict call")
        body = bytes(body)
        doc = self._load(body)
        if "instances" in doc and "inputs" in doc:
            raise WireError("request has both 'instances' and 'inputs'; send one of them")
        signature_name = doc.get("signature_name")
        if signature_name is not None and type(signature_name) is not str:
            raise WireError("'signature_name' must be a string")
        specs = {s.name: s for s in self.signature.inputs} if self.signature else {}
        check_bools = b"true" in body or b"false" in body
        if "instances" in doc:
            fmt: Format = "rows"
            inputs = _read_rows(doc["instances"], "instances", specs, check_bools)
        elif "inputs" in doc:
            fmt = "columnar"
            inputs = _read_columns(doc["inputs"], "inputs", specs, check_bools)
        else:
            raise WireError("request has neither 'instances' (row format) nor 'inputs' (columnar)")
        return InferRequest(
            inputs,
            model_name=where.model if where else "model",
            model_version=where.version if where else None,
            version_label=where.label if where else None,
            signature_name=signature_name,
            wire={"format": fmt},
        )

    # ------------------------------------------------------------------ responses

    def encode_response(
        self, response: InferResponse, request: InferRequest | None = None
    ) -> Encoded:
        """Serialize outputs as ``predictions`` (row requests) or ``outputs`` (columnar ones)."""
        fmt = request.wire.get("format", self.format) if request is not None else self.format
        key = "predictions" if fmt == "rows" else "outputs"
        return Encoded(_encode_tensors(response.outputs, key, fmt, {}), JSON_HEADERS)

    def decode_response(self, body: bytes, headers: Headers | None = None) -> InferResponse:
        """Parse a predict response; an error body raises ``TargetError`` with the server's text."""
        body = bytes(body)
        doc = self._load(body)
        raise_for_error(doc)
        specs = {s.name: s for s in self.signature.outputs} if self.signature else {}
        check_bools = b"true" in body or b"false" in body
        if "predictions" in doc:
            outputs = _read_rows(doc["predictions"], "predictions", specs, check_bools)
        elif "outputs" in doc:
            outputs = _read_columns(doc["outputs"], "outputs", specs, check_bools)
        else:
            raise WireError("response has neither 'predictions' nor 'outputs' nor 'error'")
        return InferResponse(outputs)

    def encode_error(self, message: str) -> Encoded:
        """An error body ``{"error": message}``."""
        return error_body(message)

    def decode_error(self, body: bytes, headers: Headers | None = None) -> str | None:
        """The server's error message if ``body`` is an error body, else None."""
        try:
            return error_message(loads(body, nonfinite_tokens=True))
        except WireError:
            return None

    def _load(self, body: bytes) -> dict[str, Any]:
        if len(body) > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"body of {len(body)} bytes exceeds the {self.max_body_bytes}-byte limit"
            )
        doc = loads(body, nonfinite_tokens=True)
        if type(doc) is not dict:
            raise WireError("body must be a JSON object")
        return doc


def _strings(name: str) -> Literal["b64", "auto"]:
    return "b64" if name.endswith("_bytes") else "auto"


def _encode_tensors(
    arrays: Mapping[str, np.ndarray], key: str, fmt: str, head: dict[str, Any]
) -> bytes:
    """Dump ``arrays`` under ``key`` in row or columnar layout; one tensor goes unnamed."""
    names = list(arrays)
    single = len(names) == 1
    if fmt != "rows" or single:
        if fmt == "rows" and arrays[names[0]].ndim == 0:
            raise WireError("is a scalar; the row format needs a batch dimension", tensor=names[0])
        values = {n: tensor_json(a, tensor=n, strings=_strings(n)) for n, a in arrays.items()}

        def build(v: Mapping[str, Any]) -> Any:
            return {**head, key: v[names[0]] if single else v}

        return dumps_tensors(build, values, arrays, nonfinite_tokens=True)
    try:
        batches = set(map(len, arrays.values()))  # len() fails on a 0-d array
    except TypeError:
        batches = set()
    if len(batches) != 1:
        first = len(arrays[names[0]]) if arrays[names[0]].ndim else None
        for n, a in arrays.items():
            if a.ndim == 0 or len(a) != first:
                raise WireError(
                    f"has shape {list(a.shape)}; the row format needs every tensor to share "
                    f"its first dimension ({first})",
                    tensor=n,
                )
    # The document up to the list, then the list written straight after it.
    prefix = dumps({**head, key: orjson.Fragment(b"0")})[:-2]
    return _rows_text(arrays, batches.pop(), prefix, b"}")


def _rows_text(
    arrays: Mapping[str, np.ndarray], batch: int, prefix: bytes = b"", suffix: bytes = b""
) -> bytes:
    """The row-format list as JSON text, between ``prefix`` and ``suffix``: one object per
    row, keys in tensor order.

    Building thousands of small per-row dicts is slow, so each run of consecutive 1-D
    tensors of one dtype is written at once: its numbers are dumped as one matrix, and in
    each row's text every value is preceded by a ``%b`` that the keys then fill in (number
    text never holds a ``%``). Strings and tensors with more dimensions go row by row.
    """
    if batch == 0:
        return prefix + b"[]" + suffix
    runs: list[list[bytes]] = []  # per run of tensors: per row, its '"name":value,...' text
    for kind, group in groupby(arrays.items(), key=_run_kind):
        members = list(group)
        names = tuple(n for n, _ in members)
        if kind is None:  # tensors with ndim >= 2 each make a run of their own
            for n, a in members:
                key = _keys((n,))[0]
                runs.append([key + cell for cell in _row_cells(n, a)])
        elif kind == _OBJECT:  # 1-D strings
            escaped = [k.replace(b"%", b"%%") for k in _keys(names)]
            raw = [a.tolist() for _, a in members]
            if _plain_text(names, raw):  # printable ASCII: the bytes are their own JSON text
                template = b",".join(k + b'"%b"' for k in escaped)
                runs.append([template % row for row in zip(*raw, strict=True)])
            else:
                template = b",".join(k + b"%b" for k in escaped)
                columns = [tensor_json(a, tensor=n, strings=_strings(n)) for n, a in members]
                rows = zip(*columns, strict=True)
                runs.append([template % tuple(map(orjson.dumps, row)) for row in rows])
        else:  # 1-D numbers of one dtype; concatenate + transpose beats np.stack here
            keys = _keys(names)
            block = np.concatenate([a for _, a in members]).reshape(len(members), batch).T
            pieces = _number_text(block)[2:-2].split(b"],[")
            runs.append([(b"%b" + p.replace(b",", b",%b")) % keys for p in pieces])
    # One join over [fragment, separator, fragment, ...] copies the text only once.
    width = 2 * len(runs)
    parts = [b","] * (1 + width * batch)
    parts[0] = prefix + b"[{"
    for i, run in enumerate(runs):
        parts[1 + 2 * i :: width] = run
    parts[width::width] = [b"},{"] * batch
    parts[-1] = b"}]" + suffix
    return b"".join(parts)


def _plain_text(names: tuple[str, ...], columns: list[list[bytes]]) -> bool:
    """True when every string is ASCII needing no JSON escape and none is sent as base64."""
    if any(_strings(n) == "b64" for n in names):
        return False
    joined = b"".join(chain.from_iterable(columns))
    return joined.isascii() and _NEEDS_ESCAPE.search(joined) is None


def _run_kind(item: tuple[str, np.ndarray]) -> int | None:
    """Consecutive 1-D tensors of one dtype are written together; others one by one."""
    return item[1].dtype.num if item[1].ndim == 1 else None


@lru_cache(maxsize=256)
def _keys(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """``"name":`` for each name (a client sends the same names again and again)."""
    return tuple(dumps(n) + b":" for n in names)


def _number_text(array: np.ndarray) -> bytes:
    text = dumps(np.ascontiguousarray(array))
    # orjson writes NaN and infinities as null, the only way null gets into number text.
    return nonfinite_json(array) if b"null" in text else text


def _row_cells(name: str, array: np.ndarray) -> list[bytes]:
    """The JSON text of each row of a BYTES tensor or of a numeric tensor with ndim >= 2."""
    if array.dtype == object:
        return list(map(orjson.dumps, tensor_json(array, tensor=name, strings=_strings(name))))
    if array.size == 0:
        return [dumps(np.ascontiguousarray(row)) for row in array]
    # Rows are separated by "]" * d + "," + "[" * d with d = ndim - 1; deeper separators
    # have fewer brackets, so splitting on this one cuts exactly between rows.
    depth = array.ndim - 1
    text = _number_text(array)[array.ndim : -array.ndim]
    opening, closing = b"[" * depth, b"]" * depth
    return [opening + p + closing for p in text.split(closing + b"," + opening)]


def _single_name(specs: Mapping[str, TensorSpec], key: str) -> str:
    if not specs:
        return DEFAULT_OUTPUT_NAME if key in ("predictions", "outputs") else DEFAULT_INPUT_NAME
    if len(specs) > 1:
        raise WireError(
            f"'{key}' holds one unnamed tensor but the signature has {len(specs)}: "
            f"{', '.join(specs)}; key each by name"
        )
    return next(iter(specs))


def _read(name: str, data: Any, specs: Mapping[str, TensorSpec], check_bools: bool) -> np.ndarray:
    spec = specs.get(name)
    return array_from_json(
        data, spec.dtype if spec else None, tensor=name, b64=True, check_bools=check_bools
    )


def _read_rows(
    value: Any, key: str, specs: Mapping[str, TensorSpec], check_bools: bool
) -> dict[str, np.ndarray]:
    """Tensors from a row-format list: objects keyed by name, or bare values of one tensor."""
    if type(value) is not list:
        raise WireError(f"'{key}' must be a list with one entry per row")
    if not value:
        if not specs:
            return {_single_name(specs, key): np.zeros(0)}
        return {
            s.name: np.zeros((0, *[max(d, 0) for d in s.row_shape()]), s.dtype.numpy)
            for s in specs.values()
        }
    first = value[0]
    if type(first) is not dict or is_b64_object(first):
        name = _single_name(specs, key)
        return {name: _read(name, value, specs, check_bools)}
    names = list(first)
    for i, row in enumerate(value):
        if type(row) is not dict or is_b64_object(row):
            raise WireError(f"'{key}' row {i} is not an object keyed by name like row 0")
        if row.keys() != first.keys():
            missing = [n for n in names if n not in row] or [n for n in row if n not in first]
            raise WireError(
                f"'{key}' row {i} has keys {sorted(row)} but row 0 has {sorted(first)}",
                tensor=missing[0],
            )
    return {n: _read(n, [row[n] for row in value], specs, check_bools) for n in names}


def _read_columns(
    value: Any, key: str, specs: Mapping[str, TensorSpec], check_bools: bool
) -> dict[str, np.ndarray]:
    """Tensors from a columnar value: an object of named tensors, or one bare tensor."""
    if type(value) is dict and not is_b64_object(value):
        if not value:
            raise WireError(f"'{key}' is an empty object; it needs at least one tensor")
        return {n: _read(n, data, specs, check_bools) for n, data in value.items()}
    name = _single_name(specs, key)
    return {name: _read(name, value, specs, check_bools)}

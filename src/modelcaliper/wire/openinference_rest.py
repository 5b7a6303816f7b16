"""The Open Inference Protocol (v2, KServe / Triton) over REST, in JSON or with binary tensors.

A request is posted to ``/v2/models/{model}[/versions/{v}]/infer`` as a JSON object with
``inputs`` (``name``, ``shape``, ``datatype``, flat row-major ``data``, ``parameters``), an
optional ``id``, ``parameters`` and the requested ``outputs``. Responses have the same
tensor shape under ``outputs``; errors are ``{"error": "..."}``.

**Binary tensor data extension.** A tensor may instead travel as raw little-endian bytes
after the JSON (BYTES as 4-byte-length-prefixed elements, see ``rawtensor``): its JSON entry
then carries ``"parameters": {"binary_data_size": N}`` and no ``data``, and the JSON's own
length is sent in the ``Inference-Header-Content-Length`` header. A client asks for binary
outputs per output (``"parameters": {"binary_data": true}``) or for all of them (request
parameter ``binary_data_output``); the server answers accordingly.

**What plain JSON cannot carry.** JSON has no NaN or infinity and its strings are Unicode,
so the JSON encoding refuses float tensors holding NaN/inf and BYTES elements that are not
valid UTF-8, with an error that points to the binary encoding, which carries both exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any, Literal

import numpy as np

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES, Encoded, Headers
from modelcaliper.wire.jsoncodec import (
    JSON_HEADERS,
    array_from_json,
    dumps_tensors,
    error_body,
    error_message,
    loads,
    raise_for_error,
    tensor_json,
)
from modelcaliper.wire.openinference_rest_meta import (
    ModelMetadata,
    V2Path,
    decode_health,
    decode_model_metadata,
    encode_health,
    encode_model_metadata,
    encode_server_metadata,
    infer_path,
    model_path,
    parse_v2_path,
    tensor_meta,
)
from modelcaliper.wire.rawtensor import from_raw, to_raw
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, dtype_of

__all__ = [
    "HEADER_LENGTH",
    "ModelMetadata",
    "V2Path",
    "V2RestCodec",
    "decode_health",
    "decode_model_metadata",
    "encode_health",
    "encode_model_metadata",
    "encode_server_metadata",
    "infer_path",
    "model_path",
    "parse_v2_path",
]

HEADER_LENGTH = "inference-header-content-length"
"""The header that gives the length of the JSON part of a body with binary tensors."""

_HINT = "; send it with the 'v2-rest binary' encoding, which carries raw bytes"
_OCTET_STREAM = "application/octet-stream"
_V2_NAMES: dict[np.dtype[Any], str] = {d.numpy: d.v2 for d in DType}


def _header(headers: Headers | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


class V2RestCodec:
    """The v2 REST infer API, all tensors in JSON or all in the binary data extension."""

    transport: Literal["http", "grpc"] = "http"

    def __init__(
        self, binary: bool = False, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ) -> None:
        self.binary = binary
        self.max_body_bytes = max_body_bytes
        self.name = "v2-rest binary" if binary else "v2-rest json"

    def path(self, request: InferRequest) -> str:
        """The URL path ``request`` is posted to."""
        return infer_path(request.model_name, request.model_version)

    # ------------------------------------------------------------------ requests

    def encode_request(self, request: InferRequest) -> Encoded:
        """Serialize a request; binary mode appends raw tensors and asks for binary outputs."""
        doc: dict[str, Any] = {}
        if request.request_id is not None:
            doc["id"] = request.request_id
        parameters = dict(request.parameters)
        if self.binary and request.outputs is None:
            parameters["binary_data_output"] = True
        if parameters:
            doc["parameters"] = parameters
        doc["inputs"] = None  # keeps "inputs" ahead of "outputs" in the body; set by _encode
        if request.outputs is not None:
            wanted = {"binary_data": True} if self.binary else None
            doc["outputs"] = [
                {"name": o, "parameters": wanted} if wanted else {"name": o}
                for o in request.outputs
            ]
        return self._encode(doc, "inputs", request.inputs, self.binary)

    def decode_request(
        self, body: bytes, headers: Headers | None = None, *, path: str | None = None
    ) -> InferRequest:
        """Parse a request (JSON and binary tensors mixed); ``path`` names model and version."""
        where = parse_v2_path(path) if path is not None else None
        if where is not None and where.route != "infer":
            raise WireError(f"path {path!r} is not an /infer call")
        doc, tail, check_bools = self._split(body, headers)
        inputs = _read_tensors(doc.get("inputs"), tail, "inputs", check_bools)
        parameters = doc.get("parameters", {})
        if type(parameters) is not dict:
            raise WireError("request 'parameters' must be an object")
        parameters = dict(parameters)
        binary_all = parameters.pop("binary_data_output", False)
        if type(binary_all) is not bool:
            raise WireError("request parameter 'binary_data_output' must be true or false")
        outputs, binary_outputs = _requested_outputs(doc.get("outputs"))
        request_id = doc.get("id")
        return InferRequest(
            inputs,
            model_name=(where.model or "model") if where else "model",
            model_version=where.version if where else None,
            outputs=outputs,
            request_id=None if request_id is None else str(request_id),
            parameters=parameters,
            wire={"binary_data_output": binary_all, "binary_outputs": binary_outputs},
        )

    # ------------------------------------------------------------------ responses

    def encode_response(
        self, response: InferResponse, request: InferRequest | None = None
    ) -> Encoded:
        """Serialize a response; outputs are binary where ``request`` asked for it."""
        wire = request.wire if request is not None else {}
        default = wire.get("binary_data_output", self.binary)
        per_output = wire.get("binary_outputs", {})
        doc: dict[str, Any] = {"model_name": response.model_name}
        if response.model_version is not None:
            doc["model_version"] = response.model_version
        if response.request_id is not None:
            doc["id"] = response.request_id
        if response.parameters:
            doc["parameters"] = response.parameters
        return self._encode(doc, "outputs", response.outputs, default, per_output)

    def decode_response(self, body: bytes, headers: Headers | None = None) -> InferResponse:
        """Parse a response; an error body raises ``TargetError`` with the server's message."""
        doc, tail, check_bools = self._split(body, headers)
        raise_for_error(doc)
        outputs = _read_tensors(doc.get("outputs"), tail, "outputs", check_bools)
        parameters: dict[str, Any] = doc.get("parameters") or {}
        if type(parameters) is not dict:
            raise WireError("response 'parameters' must be an object")
        version, request_id = doc.get("model_version"), doc.get("id")
        return InferResponse(
            outputs,
            model_name=str(doc.get("model_name", "model")),
            model_version=None if version is None else str(version),
            request_id=None if request_id is None else str(request_id),
            parameters=parameters,
        )

    def encode_error(self, message: str) -> Encoded:
        """An error body ``{"error": message}``."""
        return error_body(message)

    def decode_error(self, body: bytes, headers: Headers | None = None) -> str | None:
        """The server's error message if ``body`` is an error body, else None."""
        try:
            doc, _, _ = self._split(body, headers)
        except WireError:
            return None
        return error_message(doc)

    # ------------------------------------------------------------------ shared

    def _encode(
        self,
        doc: dict[str, Any],
        key: str,
        arrays: Mapping[str, np.ndarray],
        binary: bool,
        per_tensor: Mapping[str, bool] | None = None,
    ) -> Encoded:
        entries: list[dict[str, Any]] = []
        raws: list[bytes] = []
        any_binary = False
        values: dict[str, Any] = {}
        json_arrays: dict[str, np.ndarray] = {}
        for name, array in arrays.items():
            datatype = _V2_NAMES.get(array.dtype) or dtype_of(array).v2
            entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
            entries.append(entry)
            if per_tensor.get(name, binary) if per_tensor else binary:
                raw = to_raw(array, dtype_of(array))
                entry["parameters"] = {"binary_data_size": len(raw)}
                raws.append(raw)
                any_binary = True
            elif array.ndim == 1 and not array.dtype.hasobject:
                values[name] = array
                json_arrays[name] = array
            else:
                flat = array.reshape(-1)
                values[name] = tensor_json(flat, tensor=name, strings="text", hint=_HINT)
                json_arrays[name] = flat
        doc[key] = entries
        json_entries = [e for e in entries if e["name"] in values]

        def build(v: Mapping[str, Any]) -> Any:
            for entry in json_entries:
                entry["data"] = v[entry["name"]]
            return doc

        header = dumps_tensors(build, values, json_arrays, nonfinite_tokens=False, hint=_HINT)
        if not any_binary:
            return Encoded(header, JSON_HEADERS)
        headers = ((HEADER_LENGTH, str(len(header))), ("content-type", _OCTET_STREAM))
        return Encoded(b"".join([header, *raws]), headers)

    def _split(
        self, body: bytes, headers: Headers | None
    ) -> tuple[dict[str, Any], memoryview, bool]:
        """The parsed JSON part, the binary tail, and whether booleans may hide in number data."""
        if len(body) > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"body of {len(body)} bytes exceeds the {self.max_body_bytes}-byte limit"
            )
        declared = _header(headers, HEADER_LENGTH)
        if declared is None:
            json_part, tail = bytes(body), memoryview(b"")
        else:
            try:
                length = int(declared)
            except ValueError:
                raise WireError(
                    f"Inference-Header-Content-Length {declared!r} is not a number"
                ) from None
            if not 0 <= length <= len(body):
                raise WireError(
                    f"Inference-Header-Content-Length {length} does not fit the "
                    f"{len(body)}-byte body"
                )
            json_part, tail = bytes(body[:length]), memoryview(body)[length:]
        doc = loads(json_part, nonfinite_tokens=False, hint=_HINT)
        if type(doc) is not dict:
            raise WireError("body must be a JSON object")
        bool_tokens = json_part.count(b"true") + json_part.count(b"false")
        return doc, tail, bool_tokens > _wire_bools(doc)


def _wire_bools(doc: dict[str, Any]) -> int:
    """How many JSON booleans sit in parameters rather than in tensor data."""
    count = 0
    sections = [doc] + [
        e
        for k in ("inputs", "outputs")
        if type(doc.get(k)) is list
        for e in doc[k]
        if type(e) is dict
    ]
    for section in sections:
        parameters = section.get("parameters")
        if type(parameters) is dict:
            count += sum(1 for v in parameters.values() if type(v) is bool)
    return count


def _requested_outputs(value: Any) -> tuple[list[str] | None, dict[str, bool]]:
    if value is None:
        return None, {}
    if type(value) is not list:
        raise WireError("request 'outputs' must be a list")
    names, binary = [], {}
    for i, entry in enumerate(value):
        if type(entry) is not dict or type(entry.get("name")) is not str:
            raise WireError(f"requested outputs[{i}] needs a 'name'")
        names.append(entry["name"])
        parameters = entry.get("parameters") or {}
        if type(parameters) is not dict:
            raise WireError("'parameters' must be an object", tensor=entry["name"])
        if "binary_data" in parameters:
            if type(parameters["binary_data"]) is not bool:
                raise WireError("'binary_data' must be true or false", tensor=entry["name"])
            binary[entry["name"]] = parameters["binary_data"]
    return names, binary


def _read_tensors(
    entries: Any, tail: memoryview, key: str, check_bools: bool
) -> dict[str, np.ndarray]:
    """Tensors of a v2 ``inputs``/``outputs`` list, binary sections taken from ``tail`` in order."""
    if type(entries) is not list:
        raise WireError(f"body has no '{key}' list")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for i, entry in enumerate(entries):
        if type(entry) is not dict or type(entry.get("name")) is not str:
            raise WireError(f"{key}[{i}] is not an object with a 'name'")
        name = entry["name"]
        if name in out:
            raise WireError(f"appears twice in '{key}'", tensor=name)
        dtype, shape = tensor_meta(entry, name)
        parameters = entry.get("parameters") or {}
        if type(parameters) is not dict:
            raise WireError("'parameters' must be an object", tensor=name)
        if "shared_memory_region" in parameters:
            raise WireError("shared-memory tensors are not supported", tensor=name)
        size = parameters.get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise WireError("has neither 'data' nor a binary_data_size parameter", tensor=name)
            out[name] = _json_tensor(entry["data"], dtype, shape, name, check_bools)
            continue
        if "data" in entry:
            raise WireError("has both 'data' and a binary_data_size parameter", tensor=name)
        if type(size) is not int or size < 0:
            raise WireError(
                f"binary_data_size must be a non-negative integer, got {size!r}", tensor=name
            )
        if size > len(tail) - offset:
            raise WireError(
                f"binary_data_size {size} is larger than the {len(tail) - offset} bytes "
                "left in the body",
                tensor=name,
            )
        out[name] = from_raw(tail[offset : offset + size], dtype, shape, tensor=name)
        offset += size
    if offset != len(tail):
        raise WireError(f"body has {len(tail) - offset} bytes after the last binary tensor")
    return out


def _json_tensor(
    data: Any, dtype: DType, shape: list[int], name: str, check_bools: bool
) -> np.ndarray:
    array = array_from_json(data, dtype, tensor=name, check_bools=check_bools)
    count = prod(shape)  # dimensions already checked by tensor_meta
    if array.size != count:
        raise WireError(
            f"shape {shape} needs {count} elements but 'data' holds {array.size}", tensor=name
        )
    return array.reshape(shape)

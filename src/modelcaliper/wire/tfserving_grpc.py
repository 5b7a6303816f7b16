"""TF Serving's gRPC Predict messages: ``PredictRequest`` and ``PredictResponse``.

Encoding writes numbers as ``tensor_content`` (the raw little-endian buffer) and strings as
``string_val``, and assembles the message from cached per-tensor prefixes plus each array's
bytes (see ``protowire``). Decoding accepts everything TensorFlow itself writes: ``tensor_content``
or the typed ``*_val`` fields, including TF's rule that a single ``*_val`` value with a larger
shape fills the whole tensor. The model-metadata and model-status messages live in
``tfserving_grpc_meta``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from modelcaliper.errors import PayloadTooLargeError, UsageError, WireError
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES, Encoded, Headers
from modelcaliper.wire.protos import tfserving_pb2 as pb
from modelcaliper.wire.protowire import (
    BoundedCache,
    TensorLayout,
    len_field,
    len_header,
    parse_message,
    scalars_to_array,
    varint,
)
from modelcaliper.wire.rawtensor import from_raw
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor, dtype_of

__all__ = [
    "TFServingGrpcCodec",
    "model_spec_bytes",
    "read_model_spec",
    "tensor_from_proto",
]

_BY_TF_ENUM = {d.tf_enum: d for d in DType}

# The repeated field TensorFlow uses for each type when it does not write tensor_content,
# and the type of that field's elements.
_VALUE_FIELDS: dict[DType, tuple[str, str]] = {
    DType.FP32: ("float_val", "float32"),
    DType.FP64: ("double_val", "float64"),
    DType.INT8: ("int_val", "int32"),
    DType.INT16: ("int_val", "int32"),
    DType.INT32: ("int_val", "int32"),
    DType.UINT8: ("int_val", "int32"),
    DType.UINT16: ("int_val", "int32"),
    DType.INT64: ("int64_val", "int64"),
    DType.BOOL: ("bool_val", "bool"),
    DType.FP16: ("half_val", "int32"),
    DType.UINT32: ("uint32_val", "uint32"),
    DType.UINT64: ("uint64_val", "uint64"),
    DType.BYTES: ("string_val", "object"),
}

# Map fields holding tensors: PredictRequest.inputs and PredictResponse.outputs.
_INPUTS_FIELD = 2
_OUTPUTS_FIELD = 1

_LAYOUTS = BoundedCache(256)
_SHAPES = BoundedCache()
_SPECS = BoundedCache(256)
_STRING_DTYPE_FIELD = b"\x08" + varint(DType.BYTES.tf_enum)


# ---------------------------------------------------------------------------- encoding


def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    # TensorShapeProto.dim (2) of Dim{size (1)}; proto3 leaves a zero size out.
    return b"".join(len_field(2, b"\x08" + varint(d) if d else b"") for d in shape)


def _layout(field_number: int, names: tuple[str, ...], arrays: list[np.ndarray]) -> TensorLayout:
    """Every map entry's bytes up to its data: numbers up to the first byte of ``tensor_content``.

    Strings, whose size is only known per call, keep the entry's name field and the tensor's
    dtype and shape fields as the template ``_string_entry`` completes.
    """
    prefixes: list[bytes] = []
    strings: list[tuple[int, Any]] = []
    for index, (name, array) in enumerate(zip(names, arrays, strict=True)):
        dtype = dtype_of(array)
        name_field = len_field(1, name.encode("utf-8"))
        shape_field = len_field(2, _shape_bytes(array.shape))
        if dtype is DType.BYTES:
            prefixes.append(b"")
            strings.append((index, (field_number, name_field, _STRING_DTYPE_FIELD + shape_field)))
            continue
        nbytes = array.size * dtype.itemsize
        tensor_head = b"\x08" + varint(dtype.tf_enum) + shape_field
        if nbytes:
            tensor_head += len_header(4, nbytes)
        entry_head = name_field + len_header(2, len(tensor_head) + nbytes)
        entry_size = len(entry_head) + len(tensor_head) + nbytes
        prefixes.append(len_header(field_number, entry_size) + entry_head + tensor_head)
    return TensorLayout(arrays, prefixes, strings)


def _string_entry(template: tuple[int, bytes, bytes], array: np.ndarray) -> bytes:
    field_number, name_field, tensor_head = template
    try:
        values = pb.TensorProto(string_val=array.ravel().tolist()).SerializeToString()
    except TypeError:  # an element that is not bytes: normalise and try once more
        values = pb.TensorProto(string_val=as_tensor(array, DType.BYTES).ravel().tolist())
        values = values.SerializeToString()
    tensor_size = len(tensor_head) + len(values)
    entry_head = name_field + len_header(2, tensor_size)
    size = len(entry_head) + tensor_size
    return len_header(field_number, size) + entry_head + tensor_head + values


def _tensor_entries(field_number: int, tensors: Mapping[str, np.ndarray]) -> list[bytes]:
    """The serialized map entries of ``tensors`` for map field ``field_number``, in pieces."""
    # The hot path: one cached layout per set of names, then one buffer copy per tensor.
    names = tuple(tensors)
    arrays = list(tensors.values())
    key = (field_number, names)
    layout = _LAYOUTS.get(key)
    if layout is None or not layout.fits(arrays):
        arrays = [as_tensor(array) for array in arrays]
        layout = _LAYOUTS.put(key, _layout(field_number, names, arrays))
    return layout.parts(arrays, _string_entry)  # type: ignore[no-any-return]


def _version_number(version: str | None) -> int | None:
    if version is None:
        return None
    try:
        return int(version)
    except ValueError:
        raise UsageError(f"TF Serving model versions are integers, got '{version}'") from None


def model_spec_bytes(
    name: str,
    version: str | None = None,
    version_label: str | None = None,
    signature_name: str | None = None,
) -> bytes:
    """A serialized ``ModelSpec``; ``version`` must be an integer string."""
    key = (name, version, version_label, signature_name)
    found = _SPECS.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return]
    if version is not None and version_label is not None:
        raise UsageError(
            f"model '{name}': give a version ({version}) or a version label "
            f"({version_label}), not both"
        )
    spec = pb.ModelSpec(name=name, signature_name=signature_name or "")
    number = _version_number(version)
    if number is not None:
        spec.version.value = number
    elif version_label is not None:
        spec.version_label = version_label
    return _SPECS.put(key, spec.SerializeToString())  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- decoding


def _shape_of(tensor: pb.TensorProto, name: str) -> tuple[int, ...]:
    # Reading dims through the message costs ~1 us per tensor; its bytes make a cheap key.
    key = tensor.tensor_shape.SerializeToString()
    shape = _SHAPES.get(key)
    if shape is not None:
        return shape  # type: ignore[no-any-return]
    proto = tensor.tensor_shape
    if proto.unknown_rank:
        raise WireError("tensor_shape has unknown_rank set; a known shape is needed", tensor=name)
    dims = tuple(int(d.size) for d in proto.dim)
    if any(d < 0 for d in dims):
        raise WireError(f"tensor_shape {list(dims)} has a negative dimension", tensor=name)
    return _SHAPES.put(key, dims)  # type: ignore[no-any-return]


def _dtype_of_enum(number: int, name: str) -> DType:
    found = _BY_TF_ENUM.get(number)
    if found is None:
        try:
            label = pb.DataType.Name(number)
        except ValueError:
            label = f"number {number}"
        raise WireError(f"dtype {label} is not supported", tensor=name)
    return found


def tensor_from_proto(
    tensor: pb.TensorProto, name: str, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> np.ndarray:
    """The array a ``TensorProto`` holds; malformed tensors raise ``WireError`` naming ``name``.

    Numeric ``tensor_content`` becomes a read-only view over the message's bytes. A single
    ``*_val`` value with a larger shape fills the tensor, as in TensorFlow, up to ``max_bytes``.
    """
    dtype = _dtype_of_enum(tensor.dtype, name)
    shape = _shape_of(tensor, name)
    content = tensor.tensor_content
    if content:
        if dtype is DType.BYTES:
            raise WireError("DT_STRING tensors carry string_val, not tensor_content", tensor=name)
        return from_raw(content, dtype, shape, tensor=name)
    field, carrier = _VALUE_FIELDS[dtype]
    values = getattr(tensor, field)
    count = math.prod(shape)
    n = len(values)
    if n == count:
        return scalars_to_array(values, dtype, carrier, field=field, tensor=name).reshape(shape)
    if n == 1 and count > 1:
        size_bytes = count * (dtype.itemsize or 8)
        if size_bytes > max_bytes:
            raise PayloadTooLargeError(
                f"one {field} value filling shape {list(shape)} makes {size_bytes} bytes, "
                f"beyond the {max_bytes}-byte limit",
                tensor=name,
            )
        one = scalars_to_array(values, dtype, carrier, field=field, tensor=name)
        return np.full(shape, one[0], dtype=one.dtype)
    raise WireError(
        f"{dtype.tf_name} tensor has {n} {field} values and no tensor_content, "
        f"but shape {list(shape)} holds {count}",
        tensor=name,
    )


def _tensors_from_map(entries: Any, max_bytes: int) -> dict[str, np.ndarray]:
    return {
        name: tensor_from_proto(tensor, name, max_bytes=max_bytes)
        for name, tensor in sorted(entries.items())
    }


def read_model_spec(spec: pb.ModelSpec) -> tuple[str, str | None, str | None, str | None]:
    """``(name, version, version_label, signature_name)`` of a ``ModelSpec``, None if unset."""
    choice = spec.WhichOneof("version_choice")
    version = str(spec.version.value) if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label, spec.signature_name or None


# ---------------------------------------------------------------------------- the codec


class TFServingGrpcCodec:
    """TF Serving's ``PredictionService/Predict`` request and response messages."""

    name = "tfserving-grpc"
    transport: Literal["http", "grpc"] = "grpc"

    def __init__(self, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes

    def encode_request(self, request: InferRequest) -> Encoded:
        """Serialize a ``PredictRequest``: numbers as ``tensor_content``, text as ``string_val``."""
        spec = model_spec_bytes(
            request.model_name, request.model_version, request.version_label, request.signature_name
        )
        parts = [len_header(1, len(spec)), spec, *_tensor_entries(_INPUTS_FIELD, request.inputs)]
        for output in request.outputs or ():
            parts.append(len_field(3, output.encode("utf-8")))
        return Encoded(b"".join(parts))

    def decode_request(self, body: bytes, headers: Headers | None = None) -> InferRequest:
        """Parse a ``PredictRequest``; raise ``WireError`` for anything malformed."""
        message = parse_message(pb.PredictRequest, body, self.max_body_bytes)
        name, version, label, signature = read_model_spec(message.model_spec)
        request = InferRequest(
            inputs={},
            model_name=name,
            model_version=version,
            version_label=label,
            signature_name=signature,
            outputs=list(message.output_filter) or None,
        )
        # Assigned after construction: the arrays are already in normal form, and
        # re-normalising hundreds of them would cost more than decoding them.
        request.inputs = _tensors_from_map(message.inputs, self.max_body_bytes)
        return request

    def encode_response(
        self, response: InferResponse, request: InferRequest | None = None
    ) -> Encoded:
        """Serialize a ``PredictResponse`` naming the model and signature that answered."""
        signature = request.signature_name if request is not None else None
        spec = model_spec_bytes(response.model_name, response.model_version, None, signature)
        parts = _tensor_entries(_OUTPUTS_FIELD, response.outputs)
        parts.append(len_field(2, spec))
        return Encoded(b"".join(parts))

    def decode_response(self, body: bytes, headers: Headers | None = None) -> InferResponse:
        """Parse a ``PredictResponse``; raise ``WireError`` for anything malformed."""
        message = parse_message(pb.PredictResponse, body, self.max_body_bytes)
        name, version, _, _ = read_model_spec(message.model_spec)
        response = InferResponse(outputs={}, model_name=name, model_version=version)
        response.outputs = _tensors_from_map(message.outputs, self.max_body_bytes)
        return response

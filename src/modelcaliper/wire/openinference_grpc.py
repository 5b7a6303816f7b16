"""Open Inference Protocol (KServe v2) gRPC ``ModelInferRequest`` and ``ModelInferResponse``.

Every tensor, numbers and strings alike, is encoded in ``raw_input_contents`` /
``raw_output_contents`` with the layout of ``rawtensor`` (as Triton does); the message is
assembled from cached per-tensor descriptions plus the raw buffers (see ``protowire``).
Decoding also accepts typed ``contents`` (``fp32_contents``, ``int_contents``...) for clients
that send them. Metadata and readiness messages live in ``openinference_grpc_meta``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np

from modelcaliper.errors import UsageError, WireError
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES, Encoded, Headers
from modelcaliper.wire.protos import openinference_pb2 as pb
from modelcaliper.wire.protowire import (
    BoundedCache,
    TensorLayout,
    len_field,
    len_header,
    parse_message,
    scalars_to_array,
)
from modelcaliper.wire.rawtensor import element_count, from_raw, to_raw
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor, dtype_of

__all__ = ["V2GrpcCodec", "params_from_proto", "set_params", "v2_dtype"]

_BY_V2 = {d.v2: d for d in DType}

# The typed InferTensorContents field for each datatype and the type of its elements; FP16
# has none, so it can only travel raw.
_CONTENTS_FIELDS: dict[DType, tuple[str, str]] = {
    DType.BOOL: ("bool_contents", "bool"),
    DType.INT8: ("int_contents", "int32"),
    DType.INT16: ("int_contents", "int32"),
    DType.INT32: ("int_contents", "int32"),
    DType.INT64: ("int64_contents", "int64"),
    DType.UINT8: ("uint_contents", "uint32"),
    DType.UINT16: ("uint_contents", "uint32"),
    DType.UINT32: ("uint_contents", "uint32"),
    DType.UINT64: ("uint64_contents", "uint64"),
    DType.FP32: ("fp32_contents", "float32"),
    DType.FP64: ("fp64_contents", "float64"),
    DType.BYTES: ("bytes_contents", "object"),
}

# Field numbers: tensors are field 5 of both messages; raw contents 7 (request) / 6 (response).
_TENSORS_FIELD = 5
_REQUEST_RAW_FIELD = 7
_RESPONSE_RAW_FIELD = 6

_LAYOUTS = BoundedCache(256)
_DESCRIPTIONS = BoundedCache()
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def v2_dtype(datatype: str, name: str) -> DType:
    """The DType of a v2 ``datatype`` string; anything else raises ``WireError`` naming ``name``."""
    found = _BY_V2.get(datatype)
    if found is None:
        raise WireError(f"datatype '{datatype}' is not a v2 datatype", tensor=name)
    return found


def set_params(target: Any, params: Mapping[str, Any]) -> None:
    """Fill an ``InferParameter`` map from python bool, int, float and str values."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, (bool, np.bool_)):
            slot.bool_param = bool(value)
        elif isinstance(value, Integral):
            number = int(value)
            if _INT64_MIN <= number <= _INT64_MAX:
                slot.int64_param = number
            elif 0 <= number <= _UINT64_MAX:
                slot.uint64_param = number
            else:
                raise UsageError(f"parameter '{key}': {number} does not fit in 64 bits")
        elif isinstance(value, Real):
            slot.double_param = float(value)
        elif isinstance(value, str):
            slot.string_param = value
        else:
            raise UsageError(
                f"parameter '{key}': a {type(value).__name__} cannot be sent; "
                "use bool, int, float or str"
            )


def params_from_proto(source: Any) -> dict[str, Any]:
    """The python values of an ``InferParameter`` map (None for a parameter with no value)."""
    out: dict[str, Any] = {}
    for key, param in source.items():
        choice = param.WhichOneof("parameter_choice")
        out[key] = getattr(param, choice) if choice else None
    return out


# ---------------------------------------------------------------------------- encoding


def _layout(raw_field: int, names: tuple[str, ...], arrays: list[np.ndarray]) -> TensorLayout:
    """The tensor descriptions (``header``) and each raw-contents field's key and length.

    Strings, whose raw size is only known per call, get no prefix: ``_raw_strings`` writes
    their whole field.
    """
    records: list[bytes] = []
    prefixes: list[bytes] = []
    strings: list[tuple[int, Any]] = []
    for index, (name, array) in enumerate(zip(names, arrays, strict=True)):
        dtype = dtype_of(array)
        described = pb.ModelInferRequest.InferInputTensor(
            name=name, datatype=dtype.v2, shape=array.shape
        ).SerializeToString()
        records.append(len_field(_TENSORS_FIELD, described))
        if dtype is DType.BYTES:
            prefixes.append(b"")
            strings.append((index, raw_field))
        else:
            prefixes.append(len_header(raw_field, array.size * dtype.itemsize))
    return TensorLayout(arrays, prefixes, strings, header=b"".join(records))


def _raw_strings(raw_field: int, array: np.ndarray) -> bytes:
    try:
        raw = to_raw(array, DType.BYTES)
    except TypeError:  # an element that is not bytes: normalise and try once more
        raw = to_raw(as_tensor(array, DType.BYTES), DType.BYTES)
    return len_header(raw_field, len(raw)) + raw


def _tensor_parts(raw_field: int, tensors: Mapping[str, np.ndarray]) -> tuple[bytes, list[bytes]]:
    """The tensor descriptions and the raw-contents fields of ``tensors``, in pieces."""
    # The hot path: one cached layout per set of names, then one buffer copy per tensor.
    names = tuple(tensors)
    arrays = list(tensors.values())
    key = (raw_field, names)
    layout = _LAYOUTS.get(key)
    if layout is None or not layout.fits(arrays):
        arrays = [as_tensor(array) for array in arrays]
        layout = _LAYOUTS.put(key, _layout(raw_field, names, arrays))
    return layout.header, layout.parts(arrays, _raw_strings)


def _head(message: Any, model_name: str, model_version: str | None, request_id: str | None,
          params: Mapping[str, Any]) -> bytes:
    message.model_name = model_name
    if model_version:
        message.model_version = model_version
    if request_id:
        message.id = request_id
    if params:
        set_params(message.parameters, params)
    return message.SerializeToString()  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- decoding


def _from_contents(tensor: Any, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    name = tensor.name
    count = element_count(shape, tensor=name)
    if dtype is DType.FP16:
        raise WireError("FP16 has no typed contents field; send it as raw contents", tensor=name)
    field, carrier = _CONTENTS_FIELDS[dtype]
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise WireError(
            f"{field} has {len(values)} values but shape {list(shape)} holds {count}", tensor=name
        )
    return scalars_to_array(values, dtype, carrier, field=field, tensor=name).reshape(shape)


def _describe(tensor: Any, key: bytes, raw_field: str) -> tuple[str, DType, tuple[int, ...]]:
    name = tensor.name
    if tensor.HasField("contents") and tensor.contents.ByteSize():
        raise WireError(f"tensor has both typed contents and {raw_field}", tensor=name)
    shape = tuple(tensor.shape)
    element_count(shape, tensor=name)  # rejects negative dimensions
    return _DESCRIPTIONS.put(key, (name, v2_dtype(tensor.datatype, name), shape))  # type: ignore[no-any-return]


def _tensors_from(
    tensors: Sequence[Any], raws: Sequence[bytes], raw_field: str
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if not raws:
        for tensor in tensors:
            name = tensor.name
            if name in out:
                raise WireError("tensor appears twice in the message", tensor=name)
            out[name] = _from_contents(tensor, v2_dtype(tensor.datatype, name), tuple(tensor.shape))
        return out
    if len(raws) != len(tensors):
        raise WireError(f"{raw_field} has {len(raws)} entries for {len(tensors)} tensors")
    # With raw contents a tensor's description holds no data, so its serialized form is a
    # small, stable key; one serialization is cheaper than reading name, datatype and shape.
    get = _DESCRIPTIONS.get
    for tensor, raw in zip(tensors, raws, strict=True):
        key = tensor.SerializeToString()
        found = get(key)
        if found is None:
            found = _describe(tensor, key, raw_field)
        name, dtype, shape = found
        if name in out:
            raise WireError("tensor appears twice in the message", tensor=name)
        out[name] = from_raw(raw, dtype, shape, tensor=name)
    return out


# ---------------------------------------------------------------------------- the codec


class V2GrpcCodec:
    """The Open Inference Protocol's ``GRPCInferenceService/ModelInfer`` messages."""

    name = "v2-grpc"
    transport: Literal["http", "grpc"] = "grpc"

    def __init__(self, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes

    def encode_request(self, request: InferRequest) -> Encoded:
        """Serialize a ``ModelInferRequest`` with every input in ``raw_input_contents``."""
        head = _head(pb.ModelInferRequest(), request.model_name, request.model_version,
                     request.request_id, request.parameters)
        described, raws = _tensor_parts(_REQUEST_RAW_FIELD, request.inputs)
        outputs = [len_field(6, len_field(1, n.encode("utf-8"))) for n in request.outputs or ()]
        return Encoded(b"".join([head, described, *outputs, *raws]))

    def decode_request(self, body: bytes, headers: Headers | None = None) -> InferRequest:
        """Parse a ``ModelInferRequest``; raise ``WireError`` for anything malformed."""
        message = parse_message(pb.ModelInferRequest, body, self.max_body_bytes)
        request = InferRequest(
            inputs={},
            model_name=message.model_name,
            model_version=message.model_version or None,
            request_id=message.id or None,
            outputs=[o.name for o in message.outputs] or None,
            parameters=params_from_proto(message.parameters),
        )
        # Assigned after construction: the arrays are already in normal form, and
        # re-normalising hundreds of them would cost more than decoding them.
        request.inputs = _tensors_from(message.inputs, message.raw_input_contents,
                                       "raw_input_contents")
        return request

    def encode_response(
        self, response: InferResponse, request: InferRequest | None = None
    ) -> Encoded:
        """Serialize a ``ModelInferResponse`` with every output in ``raw_output_contents``."""
        request_id = response.request_id or (request.request_id if request is not None else None)
        head = _head(pb.ModelInferResponse(), response.model_name, response.model_version,
                     request_id, response.parameters)
        described, raws = _tensor_parts(_RESPONSE_RAW_FIELD, response.outputs)
        return Encoded(b"".join([head, described, *raws]))

    def decode_response(self, body: bytes, headers: Headers | None = None) -> InferResponse:
        """Parse a ``ModelInferResponse``; raise ``WireError`` for anything malformed."""
        message = parse_message(pb.ModelInferResponse, body, self.max_body_bytes)
        response = InferResponse(
            outputs={},
            model_name=message.model_name,
            model_version=message.model_version or None,
            request_id=message.id or None,
            parameters=params_from_proto(message.parameters),
        )
        response.outputs = _tensors_from(message.outputs, message.raw_output_contents,
                                         "raw_output_contents")
        return response

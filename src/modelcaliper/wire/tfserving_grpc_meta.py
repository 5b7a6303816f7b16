"""TF Serving's model metadata and model status messages, to and from our own types.

``GetModelMetadataResponse.metadata["signature_def"]`` is a ``google.protobuf.Any`` whose
``type_url`` names ``tensorflow.serving.SignatureDefMap``; the packed bytes are a
``SignatureDefMap``, which converts to and from ``modelcaliper.signature.Signature``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES
from modelcaliper.wire.protos import tfserving_pb2 as pb
from modelcaliper.wire.protowire import parse_message
from modelcaliper.wire.tensors import DType
from modelcaliper.wire.tfserving_grpc import model_spec_bytes, read_model_spec

__all__ = [
    "PREDICT_METHOD_NAME",
    "SIGNATURE_DEF_TYPE_URL",
    "ModelMetadata",
    "ModelRef",
    "VersionStatus",
    "decode_metadata_request",
    "decode_metadata_response",
    "decode_status_request",
    "decode_status_response",
    "encode_metadata_request",
    "encode_metadata_response",
    "encode_status_request",
    "encode_status_response",
]

SIGNATURE_DEF_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
"""The ``Any.type_url`` TF Serving writes for the signature map (with TF Serving's names)."""

PREDICT_METHOD_NAME = "tensorflow/serving/predict"
"""``SignatureDef.method_name`` of a signature served through Predict."""

_BY_TF_ENUM = {d.tf_enum: d for d in DType}


@dataclass(frozen=True)
class ModelRef:
    """Which model (and version or version label) a metadata or status message is about."""

    name: str
    version: str | None = None
    version_label: str | None = None
    signature_name: str | None = None

    def to_bytes(self) -> bytes:
        """This reference as a serialized ``ModelSpec``."""
        return model_spec_bytes(self.name, self.version, self.version_label, self.signature_name)

    @classmethod
    def from_proto(cls, spec: pb.ModelSpec) -> ModelRef:
        """Read a parsed ``ModelSpec``."""
        return cls(*read_model_spec(spec))


@dataclass(frozen=True)
class ModelMetadata:
    """A model's signatures, keyed by signature name, as a metadata response describes them."""

    model: ModelRef
    signatures: dict[str, Signature] = field(default_factory=dict)

    def signature(self, name: str | None = None) -> Signature:
        """The signature called ``name``; by default ``serving_default`` or the only one."""
        if name is None:
            served = {k: v for k, v in self.signatures.items() if not k.startswith("__")}
            if "serving_default" in served or len(served) != 1:
                name = "serving_default"
            else:
                name = next(iter(served))
        try:
            return self.signatures[name]
        except KeyError:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise WireError(
                f"model '{self.model.name}' has no signature '{name}' (has: {known})"
            ) from None


@dataclass(frozen=True)
class VersionStatus:
    """One entry of ``GetModelStatusResponse``: a version and its state (``AVAILABLE``...)."""

    version: int
    state: str
    error_code: int = 0
    error_message: str = ""


def encode_metadata_request(model: ModelRef, fields: Sequence[str] = ("signature_def",)) -> bytes:
    """A serialized ``GetModelMetadataRequest`` for ``model`` asking for ``fields``."""
    message = pb.GetModelMetadataRequest(metadata_field=list(fields))
    message.model_spec.ParseFromString(model.to_bytes())
    return message.SerializeToString()


def decode_metadata_request(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> tuple[ModelRef, list[str]]:
    """The model and metadata fields a ``GetModelMetadataRequest`` asks about."""
    message = parse_message(pb.GetModelMetadataRequest, body, max_bytes)
    return ModelRef.from_proto(message.model_spec), list(message.metadata_field)


def _fill_info(info: pb.TensorInfo, spec: TensorSpec) -> None:
    info.name = str(spec.options.get("tensor_name", spec.name))
    info.dtype = spec.dtype.tf_enum  # type: ignore[assignment]
    if spec.options.get("unknown_rank"):
        info.tensor_shape.unknown_rank = True
        return
    info.tensor_shape.SetInParent()
    for size in spec.shape:
        info.tensor_shape.dim.add().size = size


def encode_metadata_response(model: ModelRef, signatures: Iterable[Signature]) -> bytes:
    """A serialized ``GetModelMetadataResponse`` describing ``signatures``."""
    packed = pb.SignatureDefMap()
    for signature in signatures:
        definition = packed.signature_def[signature.name]
        definition.method_name = PREDICT_METHOD_NAME
        for spec in signature.inputs:
            _fill_info(definition.inputs[spec.name], spec)
        for spec in signature.outputs:
            _fill_info(definition.outputs[spec.name], spec)
    message = pb.GetModelMetadataResponse()
    message.model_spec.ParseFromString(model.to_bytes())
    entry = message.metadata["signature_def"]
    entry.type_url = SIGNATURE_DEF_TYPE_URL
    entry.value = packed.SerializeToString()
    return message.SerializeToString()


def _spec_from_info(key: str, info: pb.TensorInfo) -> TensorSpec:
    dtype = _BY_TF_ENUM.get(info.dtype)
    if dtype is None:
        raise WireError(f"signature dtype number {info.dtype} is not supported", tensor=key)
    options: dict[str, object] = {}
    if info.name and info.name != key:
        options["tensor_name"] = info.name
    if info.tensor_shape.unknown_rank:
        options["unknown_rank"] = True
        return TensorSpec(key, dtype, (-1,), options)
    shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    if any(d < -1 for d in shape):
        raise WireError(f"signature shape {list(shape)} has a dimension below -1", tensor=key)
    return TensorSpec(key, dtype, shape, options)


def decode_metadata_response(body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ModelMetadata:
    """The model and signatures of a ``GetModelMetadataResponse`` (tensors sorted by name)."""
    message = parse_message(pb.GetModelMetadataResponse, body, max_bytes)
    model = ModelRef.from_proto(message.model_spec)
    if "signature_def" not in message.metadata:
        return ModelMetadata(model)
    packed = message.metadata["signature_def"]
    if not packed.type_url.endswith("/tensorflow.serving.SignatureDefMap"):
        raise WireError(
            f"metadata 'signature_def' holds {packed.type_url!r}, not a SignatureDefMap"
        )
    definitions = parse_message(pb.SignatureDefMap, packed.value, max_bytes)
    signatures = {}
    for sig_name, definition in sorted(definitions.signature_def.items()):
        signatures[sig_name] = Signature(
            inputs=tuple(_spec_from_info(k, v) for k, v in sorted(definition.inputs.items())),
            outputs=tuple(_spec_from_info(k, v) for k, v in sorted(definition.outputs.items())),
            name=sig_name,
        )
    return ModelMetadata(model, signatures)


def encode_status_request(model: ModelRef) -> bytes:
    """A serialized ``GetModelStatusRequest`` for ``model``."""
    message = pb.GetModelStatusRequest()
    message.model_spec.ParseFromString(model.to_bytes())
    return message.SerializeToString()


def decode_status_request(body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ModelRef:
    """The model a ``GetModelStatusRequest`` asks about."""
    return ModelRef.from_proto(parse_message(pb.GetModelStatusRequest, body, max_bytes).model_spec)


def encode_status_response(statuses: Iterable[VersionStatus]) -> bytes:
    """A serialized ``GetModelStatusResponse`` listing ``statuses``."""
    message = pb.GetModelStatusResponse()
    for status in statuses:
        try:
            state = pb.ModelVersionStatus.State.Value(status.state)
        except ValueError:
            known = ", ".join(pb.ModelVersionStatus.State.keys())
            raise WireError(
                f"unknown model state '{status.state}'; expected one of {known}"
            ) from None
        entry = message.model_version_status.add(version=status.version, state=state)
        entry.status.error_code = status.error_code
        entry.status.error_message = status.error_message
    return message.SerializeToString()


def decode_status_response(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> list[VersionStatus]:
    """The version states a ``GetModelStatusResponse`` lists (unknown states by number)."""
    message = parse_message(pb.GetModelStatusResponse, body, max_bytes)
    out = []
    for entry in message.model_version_status:
        try:
            state = pb.ModelVersionStatus.State.Name(entry.state)
        except ValueError:
            state = str(entry.state)
        out.append(VersionStatus(int(entry.version), state, entry.status.error_code,
                                 entry.status.error_message))
    return out

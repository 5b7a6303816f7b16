"""Open Inference Protocol (v2) gRPC metadata and health messages, to and from our own types.

``ModelMetadataResponse`` converts to and from ``modelcaliper.signature.Signature``; the
readiness and liveness calls carry a model reference one way and a single boolean back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.base import DEFAULT_MAX_BODY_BYTES
from modelcaliper.wire.openinference_grpc import v2_dtype
from modelcaliper.wire.protos import openinference_pb2 as pb
from modelcaliper.wire.protowire import parse_message

__all__ = [
    "EMPTY_REQUEST",
    "ModelMetadata",
    "ServerMetadata",
    "decode_model_metadata_request",
    "decode_model_metadata_response",
    "decode_model_ready_request",
    "decode_ready",
    "decode_server_metadata_response",
    "encode_model_metadata_request",
    "encode_model_metadata_response",
    "encode_model_ready_request",
    "encode_ready",
    "encode_server_metadata_response",
]

EMPTY_REQUEST = b""
"""``ServerLiveRequest``, ``ServerReadyRequest`` and ``ServerMetadataRequest`` have no fields."""


@dataclass(frozen=True)
class ModelMetadata:
    """What ``ModelMetadataResponse`` says about a model."""

    name: str
    signature: Signature
    versions: tuple[str, ...] = ()
    platform: str = ""


@dataclass(frozen=True)
class ServerMetadata:
    """What ``ServerMetadataResponse`` says about a server."""

    name: str
    version: str = ""
    extensions: tuple[str, ...] = ()


def _model_ref(cls: type, name: str, version: str | None) -> bytes:
    return cls(name=name, version=version or "").SerializeToString()  # type: ignore[no-any-return]


def encode_model_metadata_request(name: str, version: str | None = None) -> bytes:
    """A serialized ``ModelMetadataRequest``."""
    return _model_ref(pb.ModelMetadataRequest, name, version)


def decode_model_metadata_request(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> tuple[str, str | None]:
    """``(model name, version or None)`` of a ``ModelMetadataRequest``."""
    message = parse_message(pb.ModelMetadataRequest, body, max_bytes)
    return message.name, message.version or None


def encode_model_ready_request(name: str, version: str | None = None) -> bytes:
    """A serialized ``ModelReadyRequest``."""
    return _model_ref(pb.ModelReadyRequest, name, version)


def decode_model_ready_request(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> tuple[str, str | None]:
    """``(model name, version or None)`` of a ``ModelReadyRequest``."""
    message = parse_message(pb.ModelReadyRequest, body, max_bytes)
    return message.name, message.version or None


def encode_ready(value: bool) -> bytes:
    """A serialized ``ServerLiveResponse``, ``ServerReadyResponse`` or ``ModelReadyResponse``.

    All three hold one bool as field 1 (``live`` or ``ready``), so their bytes are the same.
    """
    return pb.ModelReadyResponse(ready=value).SerializeToString()


def decode_ready(body: bytes) -> bool:
    """The bool of a ``ServerLiveResponse``, ``ServerReadyResponse`` or ``ModelReadyResponse``."""
    return bool(parse_message(pb.ModelReadyResponse, body, DEFAULT_MAX_BODY_BYTES).ready)


def _fill(target: pb.ModelMetadataResponse.TensorMetadata, spec: TensorSpec) -> None:
    target.name = spec.name
    target.datatype = spec.dtype.v2
    target.shape.extend(spec.shape)


def encode_model_metadata_response(
    name: str, signature: Signature, versions: Sequence[str] = (), platform: str = ""
) -> bytes:
    """A serialized ``ModelMetadataResponse`` describing ``signature``."""
    message = pb.ModelMetadataResponse(name=name, versions=list(versions), platform=platform)
    for spec in signature.inputs:
        _fill(message.inputs.add(), spec)
    for spec in signature.outputs:
        _fill(message.outputs.add(), spec)
    return message.SerializeToString()


def _spec(entry: pb.ModelMetadataResponse.TensorMetadata) -> TensorSpec:
    shape = tuple(entry.shape)
    if any(d < -1 for d in shape):
        raise WireError(f"metadata shape {list(shape)} has a dimension below -1", tensor=entry.name)
    return TensorSpec(entry.name, v2_dtype(entry.datatype, entry.name), shape)


def decode_model_metadata_response(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> ModelMetadata:
    """The model, signature (in message order), versions and platform of a metadata response."""
    message = parse_message(pb.ModelMetadataResponse, body, max_bytes)
    for entries in (message.inputs, message.outputs):
        names = [e.name for e in entries]
        for twice in {n for n in names if names.count(n) > 1}:
            raise WireError("metadata lists the tensor twice", tensor=twice)
    signature = Signature(
        inputs=tuple(_spec(e) for e in message.inputs),
        outputs=tuple(_spec(e) for e in message.outputs),
    )
    return ModelMetadata(message.name, signature, tuple(message.versions), message.platform)


def encode_server_metadata_response(metadata: ServerMetadata) -> bytes:
    """A serialized ``ServerMetadataResponse``."""
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=list(metadata.extensions)
    ).SerializeToString()


def decode_server_metadata_response(
    body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> ServerMetadata:
    """The name, version and extensions of a ``ServerMetadataResponse``."""
    message = parse_message(pb.ServerMetadataResponse, body, max_bytes)
    return ServerMetadata(message.name, message.version, tuple(message.extensions))

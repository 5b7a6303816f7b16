"""v2 REST paths, and the bodies of its health, server metadata and model metadata calls.

``GET /v2/health/live`` and ``/v2/health/ready`` answer by status code; KServe also sends
``{"live": true}`` / ``{"ready": true}`` while Triton sends an empty body, and both are read.
``GET /v2`` describes the server (name, version, extensions) and ``GET /v2/models/{m}`` the
model: ``{"name", "versions", "platform", "inputs": [{"name", "datatype", "shape"}],
"outputs": [...]}``, which converts to and from a ``Signature``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.base import Encoded
from modelcaliper.wire.jsoncodec import JSON_HEADERS, MAX_DIMS, dumps, loads, raise_for_error
from modelcaliper.wire.rawtensor import element_count
from modelcaliper.wire.tensors import DType, parse_dtype

__all__ = [
    "ModelMetadata",
    "V2Path",
    "decode_health",
    "decode_model_metadata",
    "encode_health",
    "encode_model_metadata",
    "encode_server_metadata",
    "infer_path",
    "model_path",
    "parse_v2_path",
    "tensor_meta",
]

_BY_V2_NAME = {d.v2: d for d in DType}


class V2Path(NamedTuple):
    """A parsed ``/v2/...`` path; ``route`` is live, ready, server_metadata, model_metadata,
    model_ready or infer."""

    route: str
    model: str | None = None
    version: str | None = None


def model_path(model: str, version: str | int | None = None) -> str:
    """``/v2/models/{model}[/versions/{v}]``: the model metadata URL and the base of the others."""
    if not model or any(c in model for c in "/?# "):
        raise WireError(f"model name {model!r} cannot appear in a v2 path")
    if version is None or str(version) == "":
        return f"/v2/models/{model}"
    if any(c in str(version) for c in "/?# "):
        raise WireError(f"model '{model}': version {version!r} cannot appear in a path")
    return f"/v2/models/{model}/versions/{version}"


def infer_path(model: str, version: str | int | None = None) -> str:
    """``/v2/models/{model}[/versions/{v}]/infer``."""
    return model_path(model, version) + "/infer"


def parse_v2_path(path: str) -> V2Path:
    """Classify a v2 REST path and pull out model and version; WireError if it is not one."""
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    if parts[:2] != ["", "v2"]:
        raise WireError(f"path {path!r} is not a v2 REST path (/v2/...)")
    rest = parts[2:]
    if not rest:
        return V2Path("server_metadata")
    if rest in (["health", "live"], ["health", "ready"]):
        return V2Path(rest[1])
    if rest[0] != "models" or len(rest) < 2 or not rest[1]:
        raise WireError(f"path {path!r}: expected /v2/health/..., or /v2/models/NAME[/versions/V]")
    model, rest = rest[1], rest[2:]
    version = None
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            raise WireError(f"path {path!r}: '/versions/' needs a version")
        version, rest = rest[1], rest[2:]
    routes = {(): "model_metadata", ("ready",): "model_ready", ("infer",): "infer"}
    route = routes.get(tuple(rest))
    if route is None:
        raise WireError(f"path {path!r}: unknown model route '/{'/'.join(rest)}'")
    return V2Path(route, model, version)


def tensor_meta(
    entry: dict[str, Any], name: str, *, wildcard: bool = False
) -> tuple[DType, list[int]]:
    """Datatype and shape of a tensor entry; ``wildcard`` allows -1 dimensions (metadata)."""
    datatype = entry.get("datatype")
    dtype = _BY_V2_NAME.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise _datatype_error(datatype, name)
    shape = entry.get("shape")
    if type(shape) is not list or not all(type(d) is int for d in shape):
        raise WireError(f"'shape' must be a list of integers, got {shape!r}", tensor=name)
    if len(shape) > MAX_DIMS:
        raise WireError(
            f"shape has {len(shape)} dimensions; at most {MAX_DIMS} are supported", tensor=name
        )
    if wildcard:
        if any(d < -1 for d in shape):
            raise WireError(f"shape {shape} has a dimension below -1", tensor=name)
    else:
        element_count(shape, tensor=name)  # rejects negative dimensions
    return dtype, shape


def _datatype_error(datatype: Any, name: str) -> WireError:
    if type(datatype) is not str:
        return WireError("has no 'datatype'", tensor=name)
    try:
        spelled = parse_dtype(datatype).v2
    except WireError:
        return WireError(f"unknown datatype {datatype!r}", tensor=name)
    return WireError(f"unknown datatype {datatype!r}; v2 spells it {spelled}", tensor=name)


def encode_health(key: Literal["live", "ready"], value: bool) -> Encoded:
    """A health body, ``{"live": true}`` or ``{"ready": false}`` (the status code says it too)."""
    return Encoded(dumps({key: value}), JSON_HEADERS)


def decode_health(body: bytes) -> bool | None:
    """The ``live``/``ready`` flag of a health body, or None when the body is empty (Triton)."""
    if not body.strip():
        return None
    doc = loads(body, nonfinite_tokens=False)
    raise_for_error(doc)
    for key in ("live", "ready"):
        if type(doc) is dict and type(doc.get(key)) is bool:
            return bool(doc[key])
    raise WireError("health body has no 'live' or 'ready' flag")


def encode_server_metadata(
    name: str, version: str, extensions: Sequence[str] = ("binary_tensor_data",)
) -> Encoded:
    """The body of ``GET /v2``: server name, version and protocol extensions."""
    return Encoded(
        dumps({"name": name, "version": version, "extensions": list(extensions)}), JSON_HEADERS
    )


@dataclass(frozen=True)
class ModelMetadata:
    """A v2 model metadata answer: the model's name, versions, platform and signature."""

    name: str
    versions: tuple[str, ...]
    platform: str
    signature: Signature


def encode_model_metadata(
    signature: Signature,
    model: str,
    versions: Sequence[str] = ("1",),
    platform: str = "modelcaliper",
) -> Encoded:
    """The body of ``GET /v2/models/{model}``."""

    def tensors(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.dtype.v2, "shape": list(s.shape)} for s in specs]

    doc = {
        "name": model,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": tensors(signature.inputs),
        "outputs": tensors(signature.outputs),
    }
    return Encoded(dumps(doc), JSON_HEADERS)


def decode_model_metadata(body: bytes) -> ModelMetadata:
    """Parse a model metadata body; an error body raises ``TargetError``."""
    doc = loads(body, nonfinite_tokens=False)
    raise_for_error(doc)
    if type(doc) is not dict or type(doc.get("inputs")) is not list:
        raise WireError("model metadata body has no 'inputs' list")

    def specs(key: str) -> tuple[TensorSpec, ...]:
        out = []
        for i, t in enumerate(doc.get(key) or []):
            if type(t) is not dict or type(t.get("name")) is not str:
                raise WireError(f"model metadata {key}[{i}] has no name")
            dtype, shape = tensor_meta(t, t["name"], wildcard=True)
            out.append(TensorSpec(t["name"], dtype, tuple(shape)))
        return tuple(out)

    return ModelMetadata(
        str(doc.get("name", "")),
        tuple(str(v) for v in doc.get("versions") or ()),
        str(doc.get("platform", "")),
        Signature(specs("inputs"), specs("outputs")),
    )

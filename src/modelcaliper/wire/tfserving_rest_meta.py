"""TF Serving REST paths, and the bodies of its model status and model metadata calls.

``GET /v1/models/{name}`` answers ``{"model_version_status": [...]}`` (JSON of
``GetModelStatusResponse``); ``GET /v1/models/{name}/metadata`` answers the JSON of
``GetModelMetadataResponse``, whose ``metadata.signature_def.signature_def`` maps signature
names to their inputs and outputs (``dtype`` as ``DT_FLOAT``, ``tensor_shape.dim[].size`` as
a string, ``-1`` for any size). Both convert to and from ``modelcaliper.signature`` types.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.base import Encoded
from modelcaliper.wire.jsoncodec import JSON_HEADERS, dumps, loads, raise_for_error
from modelcaliper.wire.tensors import parse_dtype

__all__ = [
    "ModelPath",
    "ModelVersionStatus",
    "decode_model_metadata",
    "decode_model_status",
    "encode_model_metadata",
    "encode_model_status",
    "model_path",
    "parse_model_path",
    "predict_path",
]

_VERBS = ("predict", "classify", "regress")
_NAME = re.compile(r"[^/:?#\s]+")


class ModelPath(NamedTuple):
    """A parsed ``/v1/models/...`` path; ``verb``: predict, classify, regress, status, metadata."""

    model: str
    version: str | None
    label: str | None
    verb: str


def model_path(model: str, version: str | int | None = None, label: str | None = None) -> str:
    """``/v1/models/{model}[/versions/{v}|/labels/{l}]``: the status URL, base of the others."""
    if not _NAME.fullmatch(model):
        raise WireError(f"model name {model!r} cannot appear in a TF Serving path")
    if version is not None and label is not None:
        raise WireError(f"model '{model}': give a version or a label, not both")
    if version is not None:
        if not str(version).isdigit():
            raise WireError(f"model '{model}': version must be a whole number, got {version!r}")
        return f"/v1/models/{model}/versions/{version}"
    if label is not None:
        if not _NAME.fullmatch(label):
            raise WireError(f"model '{model}': label {label!r} cannot appear in a path")
        return f"/v1/models/{model}/labels/{label}"
    return f"/v1/models/{model}"


def predict_path(model: str, version: str | int | None = None, label: str | None = None) -> str:
    """``/v1/models/{model}[/versions/{v}|/labels/{l}]:predict``."""
    return model_path(model, version, label) + ":predict"


def parse_model_path(path: str) -> ModelPath:
    """Split a TF Serving REST path into model, version, label and verb; WireError if malformed."""
    clean = path.split("?", 1)[0]
    if not clean.startswith("/v1/models/"):
        raise WireError(f"path {path!r} is not a TF Serving REST path (/v1/models/...)")
    rest, verb = clean[len("/v1/models/") :], "status"
    tail = rest.rsplit("/", 1)[-1]
    if ":" in tail:
        rest, verb = rest.rsplit(":", 1)
        if verb not in _VERBS:
            raise WireError(
                f"path {path!r}: unknown verb ':{verb}' (expected :predict, :classify or :regress)"
            )
    elif rest.endswith("/metadata"):
        rest, verb = rest[: -len("/metadata")], "metadata"
    parts = rest.split("/")
    version = label = None
    if len(parts) == 3 and parts[1] == "versions" and parts[2].isdigit():
        version = parts[2]
    elif len(parts) == 3 and parts[1] == "labels" and _NAME.fullmatch(parts[2]):
        label = parts[2]
    elif len(parts) != 1:
        raise WireError(f"path {path!r}: expected /v1/models/NAME[/versions/N|/labels/L]")
    if not _NAME.fullmatch(parts[0]):
        raise WireError(f"path {path!r}: missing or invalid model name")
    return ModelPath(parts[0], version, label, verb)


@dataclass(frozen=True)
class ModelVersionStatus:
    """One entry of a model status answer: a version and its state (``AVAILABLE``...)."""

    version: str
    state: str = "AVAILABLE"
    error_code: str = "OK"
    error_message: str = ""


def encode_model_status(
    versions: Sequence[ModelVersionStatus] = (ModelVersionStatus("1"),),
) -> Encoded:
    """The body of ``GET /v1/models/{name}``."""
    entries = [
        {
            "version": str(v.version),
            "state": v.state,
            "status": {"error_code": v.error_code, "error_message": v.error_message},
        }
        for v in versions
    ]
    return Encoded(dumps({"model_version_status": entries}), JSON_HEADERS)


def decode_model_status(body: bytes) -> list[ModelVersionStatus]:
    """Parse a model status body; an error body raises ``TargetError``."""
    doc = loads(body, nonfinite_tokens=False)
    raise_for_error(doc)
    entries = doc.get("model_version_status") if type(doc) is dict else None
    if type(entries) is not list:
        raise WireError("model status body has no 'model_version_status' list")
    out = []
    for i, e in enumerate(entries):
        if type(e) is not dict or "version" not in e:
            raise WireError(f"model_version_status[{i}] has no 'version'")
        status: dict[str, Any] = e["status"] if type(e.get("status")) is dict else {}
        out.append(
            ModelVersionStatus(
                str(e["version"]),
                str(e.get("state", "UNKNOWN")),
                str(status.get("error_code", "OK")),
                str(status.get("error_message", "")),
            )
        )
    return out


def _tensor_info(spec: TensorSpec, default_name: str) -> dict[str, Any]:
    if spec.options.get("unknown_rank"):
        shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
    else:
        shape = {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False}
    name = str(spec.options.get("tensor_name", default_name))
    return {"dtype": spec.dtype.tf_name, "tensor_shape": shape, "name": name}


def encode_model_metadata(signature: Signature, model: str, version: str | int = "1") -> Encoded:
    """The body of ``GET /v1/models/{name}/metadata`` describing one serving signature."""
    sig = signature.name
    definition = {
        "inputs": {s.name: _tensor_info(s, f"{sig}_{s.name}:0") for s in signature.inputs},
        "outputs": {
            s.name: _tensor_info(s, f"StatefulPartitionedCall:{i}")
            for i, s in enumerate(signature.outputs)
        },
        "method_name": "tensorflow/serving/predict",
    }
    doc = {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": {sig: definition}}},
    }
    return Encoded(dumps(doc), JSON_HEADERS)


def _spec_from_info(name: str, info: Any, where: str) -> TensorSpec:
    if type(info) is not dict or "dtype" not in info:
        raise WireError(f"metadata {where} '{name}' has no dtype")
    # TF1 graphs report variables as reference types (DT_FLOAT_REF); the value type is the same.
    try:
        dtype = parse_dtype(str(info["dtype"]).removesuffix("_REF"))
    except WireError as exc:
        raise WireError(f"metadata {where} '{name}': {exc.detail}") from None
    shape_info = info.get("tensor_shape")
    if type(shape_info) is not dict:
        shape_info = {}
    options: dict[str, Any] = {}
    if type(info.get("name")) is str and info["name"]:
        options["tensor_name"] = info["name"]
    if shape_info.get("unknown_rank"):
        return TensorSpec(name, dtype, (-1,), {**options, "unknown_rank": True})
    try:
        shape = tuple(int(d.get("size", -1)) for d in shape_info.get("dim", []))
    except (TypeError, ValueError, AttributeError):
        raise WireError(f"metadata {where} '{name}' has a malformed tensor_shape") from None
    if any(d < -1 for d in shape):
        raise WireError(f"metadata {where} '{name}' has a dimension below -1 in {list(shape)}")
    return TensorSpec(name, dtype, shape, options)


def decode_model_metadata(body: bytes, signature_name: str | None = None) -> Signature:
    """The signature named ``signature_name`` (default ``serving_default``) from a metadata body."""
    doc = loads(body, nonfinite_tokens=False)
    raise_for_error(doc)
    try:
        defs = doc["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError):
        raise WireError("metadata body has no metadata.signature_def.signature_def") from None
    if type(defs) is not dict or not defs:
        raise WireError("metadata body lists no signatures")
    if signature_name is None:
        public = [k for k in defs if not k.startswith("__")]
        signature_name = (
            "serving_default" if "serving_default" in defs else (public or list(defs))[0]
        )
    definition = defs.get(signature_name)
    if type(definition) is not dict:
        raise WireError(f"metadata has no signature '{signature_name}'; it has {', '.join(defs)}")
    inputs = tuple(
        _spec_from_info(n, i, "input") for n, i in (definition.get("inputs") or {}).items()
    )
    outputs = tuple(
        _spec_from_info(n, i, "output") for n, i in (definition.get("outputs") or {}).items()
    )
    return Signature(inputs=inputs, outputs=outputs, name=signature_name)

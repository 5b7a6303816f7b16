"""Model runtimes of the embedded server: find a model artifact, open it, read its signature.

Artifacts ``open_runtime`` and ``read_signature`` accept:

    model.onnx              an ONNX file                                   → ONNX Runtime
    dir/saved_model.pb      a SavedModel directory                         → TensorFlow
    dir/model.onnx          a directory holding ``model.onnx``             → ONNX Runtime
    base/1/ base/2/ ...     a model base path: numbered version directories, each one of the
                            two directory forms above (TF Serving's layout, and Triton's
                            ``<version>/model.onnx``); the highest number is served unless
                            ``version`` names another

The heavy packages (onnx/onnxruntime, tensorflow) are imported only when a model of that
kind is opened; a missing one raises ``MissingExtraError`` naming the extra to install.
"""

from __future__ import annotations

from pathlib import Path

from modelcaliper.errors import DataError, UsageError
from modelcaliper.server.runtimes.base import (
    DEFAULT_SIGNATURE,
    GRAPH_OPTIMIZATIONS,
    Runtime,
    TimedRuntime,
    predict_timed,
    validate_inputs,
)
from modelcaliper.signature import Signature

__all__ = [
    "GRAPH_OPTIMIZATIONS",
    "KINDS",
    "Runtime",
    "artifact_in",
    "TimedRuntime",
    "open_runtime",
    "predict_timed",
    "read_signature",
    "resolve_artifact",
    "validate_inputs",
    "versions_in",
]

KINDS: tuple[str, ...] = ("onnx", "tensorflow")

_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_ACCEPTED = "a .onnx file, a SavedModel directory, or a model base path of numbered versions"


def resolve_artifact(path: str | Path, version: str | int | None = None) -> tuple[str, Path, str]:
    """Find the model at ``path``: ``(kind, artifact path, version)``, kind one of ``KINDS``.

    For a single artifact, ``version`` is only the label it is served under (default "1");
    in a model base path it picks the version directory (default: the highest number).
    """
    root = Path(path)
    wanted = None if version is None else str(version).strip()
    if not root.exists():
        raise DataError(f"model path {root} does not exist; pass {_ACCEPTED}")
    if root.is_file():
        if root.suffix.lower() == ".onnx":
            return "onnx", root, wanted or "1"
        if root.name in _SAVED_MODEL_FILES:  # the file inside a SavedModel, given by mistake
            return "tensorflow", root.parent, wanted or "1"
        raise DataError(f"{root} is not a model file this tool can serve; pass {_ACCEPTED}")
    found = artifact_in(root)
    if found is not None:
        return found[0], found[1], wanted or "1"
    versions = versions_in(root)
    if not versions:
        raise DataError(f"{root} holds no model (no saved_model.pb, model.onnx or numbered "
                        f"version directories holding one); pass {_ACCEPTED}")
    available = ", ".join(str(v) for v in sorted(versions))
    if wanted is None:
        number = max(versions)
    elif wanted.isdigit() and int(wanted) in versions:
        number = int(wanted)
    else:
        raise DataError(f"{root} has no servable version '{wanted}' (versions holding a model: "
                        f"{available}); pass one of them, or no version for the highest")
    kind, artifact = versions[number]
    return kind, artifact, str(number)


def versions_in(base: Path) -> dict[int, tuple[str, Path]]:
    """The numbered version directories of a model base path holding a model: number → (kind,
    artifact path); empty when ``base`` is no base path."""
    versions = {}
    for child in base.iterdir():
        if child.is_dir() and child.name.isdigit() and (held := artifact_in(child)):
            versions[int(child.name)] = held
    return versions


def artifact_in(directory: Path) -> tuple[str, Path] | None:
    """The model a directory holds itself (a SavedModel, or ``model.onnx``): (kind, path)."""
    if any((directory / name).is_file() for name in _SAVED_MODEL_FILES):
        return "tensorflow", directory
    if (directory / "model.onnx").is_file():
        return "onnx", directory / "model.onnx"
    return None


def open_runtime(
    path: str | Path,
    *,
    version: str | int | None = None,
    signature_name: str | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    graph_optimization: str = "all",
) -> Runtime:
    """Load the model at ``path`` (see the module docstring) into the runtime its kind needs.

    ``graph_optimization`` (disable/basic/extended/all) applies to ONNX models only; thread
    counts of ``None`` leave the runtime's defaults.
    """
    if graph_optimization not in GRAPH_OPTIMIZATIONS:
        raise UsageError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, "
                         f"got '{graph_optimization}'")
    kind, artifact, label = resolve_artifact(path, version)
    if kind == "onnx":
        _check_onnx_signature_name(artifact, signature_name)
        from modelcaliper.server.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(
            artifact,
            version=label,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            graph_optimization=graph_optimization,
        )
    if graph_optimization != "all":
        raise UsageError(f"graph_optimization='{graph_optimization}' applies to ONNX models only; "
                         f"{artifact} is a SavedModel, leave it at 'all'")
    from modelcaliper.server.runtimes.tensorflow import TensorFlowRuntime

    return TensorFlowRuntime(
        artifact,
        version=label,
        signature_name=signature_name,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def read_signature(
    path: str | Path, signature_name: str | None = None, *, version: str | int | None = None
) -> Signature:
    """The signature of the model at ``path``, without starting a serving session for ONNX."""
    kind, artifact, _ = resolve_artifact(path, version)
    if kind == "onnx":
        _check_onnx_signature_name(artifact, signature_name)
        from modelcaliper.server.runtimes.onnx import read_onnx_signature

        return read_onnx_signature(artifact)
    from modelcaliper.server.runtimes.tensorflow import read_tf_signature

    return read_tf_signature(artifact, signature_name)


def _check_onnx_signature_name(artifact: Path, signature_name: str | None) -> None:
    if signature_name not in (None, DEFAULT_SIGNATURE):
        raise UsageError(f"ONNX model {artifact} has a single signature; drop signature_name "
                         f"'{signature_name}'")

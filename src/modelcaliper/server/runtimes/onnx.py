"""ONNX Runtime on its CPU execution provider, behind the ``Runtime`` protocol.

Signature: read from the model file with the ``onnx`` package, both by ``read_signature``
(no session needed) and by the runtime itself, so the two always agree. ONNX Runtime's own
metadata cannot be used for it: it reports an input of unknown rank and a scalar input
alike, as ``[]``. Named or missing dimensions become -1; an input without shape information
accepts any rank. Graph inputs that are also initializers (weights a caller may override)
are not inputs of the signature, and outputs that are not tensors (sequences, maps) are left
out because no wire format carries them.

Strings: ONNX Runtime's string tensors hold text, and it turns a ``bytes`` element into the
text of its Python repr. BYTES inputs are therefore decoded as UTF-8 (anything else is
rejected with ``WireError``) and string outputs are encoded back to ``bytes``.

Session options: ``intra_op_threads`` sizes the pool one operator uses; ``inter_op_threads``
only matters when operators run in parallel, so setting it above 1 also switches the session
to parallel execution. ``graph_optimization`` is one of ``disable``, ``basic``, ``extended``,
``all`` (ONNX Runtime's levels; ``all`` is its default).

Profiling: ONNX Runtime profiles only a session created with profiling switched on, so
``start_profiling`` opens a second session (same options, plus profiling) and routes every
following prediction to it; ``stop_profiling`` closes that trace and returns the JSON file
it wrote (Chrome trace event format), and predictions go back to the unprofiled session.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelcaliper.errors import DataError, UsageError, WireError
from modelcaliper.server.runtimes.base import (
    ANY_RANK,
    GRAPH_OPTIMIZATIONS,
    check_threads,
    import_optional,
    validate_inputs,
)
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType, as_tensor, dtype_of

__all__ = ["OnnxRuntime", "read_onnx_signature"]

_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_PROFILE_PREFIX = "onnxruntime_profile"


def read_onnx_signature(path: Path) -> Signature:
    """The signature of the ONNX model at ``path``, read without starting ONNX Runtime."""
    onnx = import_optional("onnx", "onnx", "reading an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DataError(
            f"cannot read ONNX model {path}: {_first_line(exc)}; "
            "check that the file is a complete .onnx export"
        ) from None
    graph = model.graph
    if not model.opset_import or not model.HasField("graph"):
        raise DataError(
            f"{path} is not an ONNX model (no graph or opset); pass a file written by onnx.save"
        )
    initializers = {t.name for t in graph.initializer}
    inputs = []
    for info in graph.input:
        if info.name in initializers:
            continue
        if not info.type.HasField("tensor_type"):
            raise DataError(f"ONNX model {path}: input '{info.name}' is not a tensor; "
                            "only tensor inputs can be served")
        inputs.append(_spec(onnx, info, path))
    outputs = [
        _spec(onnx, info, path) for info in graph.output if info.type.HasField("tensor_type")
    ]
    if not inputs:
        raise DataError(f"ONNX model {path} has no inputs; export it with at least one graph input")
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _spec(onnx: ModuleType, info: Any, path: Path) -> TensorSpec:
    tensor_type = info.type.tensor_type
    try:
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        dtype = dtype_of(np.empty(0, dtype=np_dtype))
    except (KeyError, ValueError, TypeError, WireError):
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise DataError(
            f"ONNX model {path}: tensor '{info.name}' has element type {name}, which no wire "
            "format carries; cast it to a supported type in the model"
        ) from None
    if not tensor_type.HasField("shape"):
        return TensorSpec(info.name, dtype, (-1,), {ANY_RANK: True})
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return TensorSpec(info.name, dtype, shape)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class OnnxRuntime:
    """An ONNX model served by ONNX Runtime on the CPU."""

    platform = "onnxruntime_onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        version: str = "1",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization: str = "all",
    ) -> None:
        self._ort = import_optional("onnxruntime", "onnx", "serving an ONNX model")
        self.path = Path(path)
        self.version = str(version)
        if graph_optimization not in _LEVELS:
            raise UsageError(f"graph_optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, "
                             f"got '{graph_optimization}'")
        self._settings = (
            check_threads("intra_op_threads", intra_op_threads),
            check_threads("inter_op_threads", inter_op_threads),
            graph_optimization,
        )
        self.signature = read_onnx_signature(self.path)
        self._session = self._open(profile_dir=None)
        self._active = self._session
        self._profiling: Any = None
        self._lock = threading.Lock()
        self._output_names = [spec.name for spec in self.signature.outputs]
        self._string_inputs = [s.name for s in self.signature.inputs if s.dtype is DType.BYTES]
        self._string_outputs = {s.name for s in self.signature.outputs if s.dtype is DType.BYTES}
        invalid = self._ort.capi.onnxruntime_pybind11_state.InvalidArgument
        self._invalid_argument: type[Exception] = invalid

    def _open(self, profile_dir: Path | None) -> Any:
        ort = self._ort
        intra, inter, level = self._settings
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
        if intra is not None:
            options.intra_op_num_threads = intra
        if inter is not None:
            options.inter_op_num_threads = inter
            if inter > 1:
                options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_dir / _PROFILE_PREFIX)
        try:
            return ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise DataError(
                f"ONNX Runtime cannot load {self.path}: {_first_line(exc)}; "
                "check the export (onnx.checker.check_model) and its opset"
            ) from None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and run the model; string outputs come back as bytes."""
        feed = validate_inputs(self.signature, inputs)
        for name in self._string_inputs:
            feed[name] = _as_text(name, feed[name])
        try:
            results = self._active.run(self._output_names, feed)
        except self._invalid_argument as exc:
            raise WireError(f"rejected by the model: {_first_line(exc)}") from None
        outputs: dict[str, np.ndarray] = {}
        for name, value in zip(self._output_names, results, strict=True):
            outputs[name] = as_tensor(value, DType.BYTES) if name in self._string_outputs else value
        return outputs

    def start_profiling(self, out_dir: Path) -> None:
        """Route predictions to a fresh profiling session that writes its trace into ``out_dir``."""
        out_dir = Path(out_dir)
        with self._lock:
            if self._profiling is not None:
                raise UsageError(f"profiling of {self.path} is already running; stop it first")
            out_dir.mkdir(parents=True, exist_ok=True)
            self._profiling = self._open(profile_dir=out_dir)
            self._active = self._profiling
        # Loading a session leaves model-loading and initialisation events in the trace;
        # they come before the first prediction's events and are easy to tell apart.

    def stop_profiling(self) -> Path:
        """End the profiling session and return the JSON trace file it wrote."""
        with self._lock:
            if self._profiling is None:
                raise UsageError(f"profiling of {self.path} is not running; start it first")
            session, self._profiling = self._profiling, None
            self._active = self._session
        return Path(session.end_profiling()).resolve()


def _as_text(name: str, array: np.ndarray) -> np.ndarray:
    """BYTES elements as ``str``, the only string form ONNX Runtime reads faithfully."""
    out = np.empty(array.shape, dtype=object)
    flat_out = out.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        try:
            flat_out[i] = item.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(
                f"element {i} is not UTF-8 text; ONNX Runtime string tensors hold text only",
                tensor=name,
            ) from None
    return out

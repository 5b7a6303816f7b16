"""What a model runtime of the embedded server offers, and the input checks they all share.

A runtime is one loaded model: its ``signature`` (names, dtypes, shapes with -1 for dynamic
dimensions), ``platform`` and ``version`` strings for the metadata endpoints, ``predict``,
and a pair of profiling hooks. A runtime that can split its compute into the model's own
preprocessing and the model proper also offers ``predict_timed`` (see ``TimedRuntime``);
its phase names are those of ``modelcaliper.server.timing``: ``transform`` and ``model``,
or ``compute`` when there is no split.

``validate_inputs`` is the gate every request passes before a runtime sees it: anything it
rejects is the client's fault and surfaces as ``WireError`` (HTTP 400 / INVALID_ARGUMENT).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelcaliper.errors import MissingExtraError, UsageError, WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType, as_tensor, dtype_of

__all__ = [
    "ANY_RANK",
    "DEFAULT_SIGNATURE",
    "GRAPH_OPTIMIZATIONS",
    "Runtime",
    "TimedRuntime",
    "check_threads",
    "import_optional",
    "predict_timed",
    "validate_inputs",
]

# Key of ``TensorSpec.options`` marking a tensor whose rank the model leaves open; its
# ``shape`` is then only a placeholder and no rank or dimension check applies.
ANY_RANK = "any_rank"

GRAPH_OPTIMIZATIONS: tuple[str, ...] = ("disable", "basic", "extended", "all")

DEFAULT_SIGNATURE = "serving_default"


@runtime_checkable
class Runtime(Protocol):
    """A loaded model that maps named input arrays to named output arrays."""

    signature: Signature
    platform: str
    version: str

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and run the model on them."""
        ...

    def start_profiling(self, out_dir: Path) -> None:
        """Record the runtime's own profile of the following predictions under ``out_dir``."""
        ...

    def stop_profiling(self) -> Path:
        """Stop recording and return where the raw profile went (a file or a directory)."""
        ...


@runtime_checkable
class TimedRuntime(Runtime, Protocol):
    """A runtime that reports where its compute time went, in seconds per phase."""

    def predict_timed(
        self, inputs: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Like ``predict``, plus ``{"transform": s, "model": s}`` or ``{"compute": s}``."""
        ...


def predict_timed(
    runtime: Runtime, inputs: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Run ``runtime`` and time it, split into phases when the runtime can split its compute."""
    if isinstance(runtime, TimedRuntime):
        return runtime.predict_timed(inputs)
    start_s = time.perf_counter()
    outputs = runtime.predict(inputs)
    return outputs, {"compute": time.perf_counter() - start_s}


def validate_inputs(signature: Signature, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check ``inputs`` against ``signature``; return them cast to the signature's dtypes.

    Rejected with ``WireError`` naming the tensor: unknown or missing inputs, strings for
    numbers or numbers for strings, booleans mixed with numbers, floats for integers, integers
    out of the target range, a wrong rank or a wrong fixed dimension. Integers and floats are
    cast to a floating-point input, integers to a wider or narrower integer input when every
    value fits.
    """
    specs = {spec.name: spec for spec in signature.inputs}
    for name in inputs:
        if name not in specs:
            raise WireError(f"unknown input; the model takes {_listing(signature)}", tensor=name)
    checked: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in inputs:
            raise WireError(
                f"missing input; the model takes {_listing(signature)}", tensor=spec.name
            )
        checked[spec.name] = _checked(spec, inputs[spec.name])
    return checked


def _listing(signature: Signature) -> str:
    return ", ".join(f"{s.name} ({s.dtype.v2} {list(s.shape)})" for s in signature.inputs)


def _checked(spec: TensorSpec, value: Any) -> np.ndarray:
    try:
        array = value if isinstance(value, np.ndarray) else as_tensor(value)
        got = dtype_of(array)
    except WireError as exc:
        raise WireError(exc.detail, tensor=spec.name) from None
    if not spec.options.get(ANY_RANK):
        if array.ndim != len(spec.shape):
            raise WireError(
                f"expected rank {len(spec.shape)} (shape {list(spec.shape)}), "
                f"got shape {list(array.shape)}",
                tensor=spec.name,
            )
        for axis, (want_dim, got_dim) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if want_dim >= 0 and want_dim != got_dim:
                raise WireError(
                    f"dimension {axis} must be {want_dim} (shape {list(spec.shape)}), "
                    f"got shape {list(array.shape)}",
                    tensor=spec.name,
                )
    return _cast(spec, array, got)


def _cast(spec: TensorSpec, array: np.ndarray, got: DType) -> np.ndarray:
    want = spec.dtype
    if want is DType.BYTES:
        if got is not DType.BYTES:
            raise WireError(f"expected BYTES (strings), got {got.v2} numbers", tensor=spec.name)
        try:
            return as_tensor(array, DType.BYTES)
        except WireError as exc:
            raise WireError(exc.detail, tensor=spec.name) from None
    if got is want and array.dtype == want.numpy:  # a big-endian array falls through to astype
        return array
    if got is DType.BYTES:
        raise WireError(f"expected {want.v2} numbers, got BYTES (strings)", tensor=spec.name)
    if DType.BOOL in (got, want):
        raise WireError(f"expected {want.v2}, got {got.v2}", tensor=spec.name)
    if want.is_float:
        return array.astype(want.numpy)
    if got.is_float:
        raise WireError(f"expected {want.v2} integers, got {got.v2} values", tensor=spec.name)
    info = np.iinfo(want.numpy)
    if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
        raise WireError(
            f"values outside the {want.v2} range [{info.min}, {info.max}]", tensor=spec.name
        )
    return array.astype(want.numpy)


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(module, extra, purpose) from None


def check_threads(name: str, value: int | None) -> int | None:
    """Validate a thread-count setting: ``None`` (the runtime's default) or at least 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be an integer ≥ 1 (or unset for the default), got {value!r}")
    return value

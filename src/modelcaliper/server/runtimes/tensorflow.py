"""TensorFlow SavedModels behind the ``Runtime`` protocol.

The model is loaded with ``tf.saved_model.load`` and served through one of its signatures,
``serving_default`` unless another is named. The signature's inputs and outputs (from the
concrete function's ``structured_input_signature`` and ``structured_outputs``) are sorted by
name, as TF Serving lists them; ``None`` dimensions become -1 and an unknown rank accepts any
rank. BYTES inputs reach the model as ``tf.string``; string outputs come back as numpy object
arrays of ``bytes``.

Threads: TensorFlow sizes its thread pools once, when its runtime starts (the first model
load or operation in the process), and refuses to change them afterwards. ``intra_op_threads``
and ``inter_op_threads`` are applied through ``tf.config.threading`` just before the model is
loaded; if TensorFlow has already started in this process with other values, opening the
runtime fails with ``UsageError``: open it first thing in a fresh process (the embedded
server does).

Transform/model split: to have the server time the model's own preprocessing separately
from the model proper, export two more signatures next to ``serving_default``:

- ``transform`` takes the same inputs as ``serving_default`` (the raw features) and returns
  the transformed features as a dict of named tensors;
- ``model`` takes those transformed features, by the same names, and returns the same
  outputs as ``serving_default``.

For example, with the preprocessing in a Keras model ``prep`` and the rest in ``net``::

    class Exported(tf.Module):
        def __init__(self, prep, net):
            super().__init__()
            self.prep, self.net = prep, net

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="country")])
        def transform(self, country):
            return {"features": self.prep(country)}

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="features")])
        def model(self, features):
            return {"score": self.net(features)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="country")])
        def serve(self, country):
            return self.model(**self.transform(country))

    m = Exported(prep, net)
    tf.saved_model.save(m, path, signatures={
        "serving_default": m.serve, "transform": m.transform, "model": m.model})

``predict_timed`` then runs ``transform`` and ``model`` in sequence and reports each one's
seconds; without the two signatures it runs the served signature and reports ``compute``.
Signatures that are present but do not chain this way make opening the model fail with a
``DataError`` that says which names disagree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelcaliper.errors import DataError, UsageError, WireError
from modelcaliper.server.runtimes.base import (
    ANY_RANK,
    DEFAULT_SIGNATURE,
    check_threads,
    import_optional,
    validate_inputs,
)
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType, as_tensor, parse_dtype

__all__ = ["TensorFlowRuntime", "read_tf_signature"]

_SPLIT = ("transform", "model")


def _import_tf() -> ModuleType:
    return import_optional("tensorflow", "tensorflow", "serving a TensorFlow SavedModel")


def read_tf_signature(path: Path, signature_name: str | None = None) -> Signature:
    """The signature ``signature_name`` (default serving_default) of the SavedModel at ``path``."""
    tf = _import_tf()
    loaded = _load(tf, path)
    name = signature_name or DEFAULT_SIGNATURE
    return _signature_of(_pick(loaded, name, path), name, path)


def _load(tf: ModuleType, path: Path) -> Any:
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:
        raise DataError(
            f"TensorFlow cannot load the SavedModel {path}: {_first_line(exc)}; "
            "re-export it with tf.saved_model.save or model.export"
        ) from None


def _pick(loaded: Any, name: str, path: Path) -> Any:
    signatures = loaded.signatures
    if name not in signatures:
        have = ", ".join(sorted(signatures)) or "none"
        raise DataError(
            f"SavedModel {path} has no signature '{name}' (it has: {have}); "
            "pass signature_name or export the signature"
        )
    return signatures[name]


def _signature_of(function: Any, name: str, path: Path) -> Signature:
    args, kwargs = function.structured_input_signature
    if args:
        raise DataError(f"SavedModel {path}: signature '{name}' takes positional inputs; "
                        "export it with named inputs (a signatures dict of tf.functions)")
    inputs = tuple(_spec(kwargs[key], key, path) for key in sorted(kwargs))
    outputs_spec = function.structured_outputs
    if not isinstance(outputs_spec, Mapping):
        raise DataError(f"SavedModel {path}: signature '{name}' does not return a dict of "
                        "named tensors; return {'name': tensor} from the exported function")
    outputs = tuple(_spec(outputs_spec[key], key, path) for key in sorted(outputs_spec))
    return Signature(inputs=inputs, outputs=outputs, name=name)


def _spec(tensor_spec: Any, name: str, path: Path) -> TensorSpec:
    try:
        dtype = parse_dtype(int(tensor_spec.dtype.as_datatype_enum))
    except WireError:
        raise DataError(
            f"SavedModel {path}: tensor '{name}' has dtype {tensor_spec.dtype.name}, which no "
            "wire format carries; cast it in the exported function"
        ) from None
    shape = tensor_spec.shape
    if shape.rank is None:
        return TensorSpec(name, dtype, (-1,), {ANY_RANK: True})
    return TensorSpec(name, dtype, tuple(-1 if d is None else d for d in shape.as_list()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _configure_threads(tf: ModuleType, intra: int | None, inter: int | None) -> None:
    api = tf.config.threading
    for label, value, get, set_ in (
        ("intra_op_threads", intra, api.get_intra_op_parallelism_threads,
         api.set_intra_op_parallelism_threads),
        ("inter_op_threads", inter, api.get_inter_op_parallelism_threads,
         api.set_inter_op_parallelism_threads),
    ):
        if value is None or get() == value:
            continue
        try:
            set_(value)
        except RuntimeError:
            current = get() or "its default"
            raise UsageError(
                f"{label}={value} cannot take effect: TensorFlow already started in this process "
                f"with {current}; set thread counts before the first model is loaded"
            ) from None


class TensorFlowRuntime:
    """A TensorFlow SavedModel served through one of its signatures."""

    platform = "tensorflow_savedmodel"

    def __init__(
        self,
        path: str | Path,
        *,
        version: str = "1",
        signature_name: str | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> None:
        tf = self._tf = _import_tf()
        self.path = Path(path)
        self.version = str(version)
        _configure_threads(
            tf,
            check_threads("intra_op_threads", intra_op_threads),
            check_threads("inter_op_threads", inter_op_threads),
        )
        # The loaded object owns the variables and tables; the functions need it alive.
        self._loaded = _load(tf, self.path)
        name = signature_name or DEFAULT_SIGNATURE
        self._function = _pick(self._loaded, name, self.path)
        self.signature = _signature_of(self._function, name, self.path)
        self._string_outputs = {s.name for s in self.signature.outputs if s.dtype is DType.BYTES}
        self._split = self._find_split(name)
        self._invalid_argument: type[Exception] = tf.errors.InvalidArgumentError
        self._lock = threading.Lock()
        self._profile_dir: Path | None = None

    def _find_split(self, served: str) -> tuple[Any, Any, tuple[str, ...]] | None:
        signatures = self._loaded.signatures
        if served in _SPLIT or not all(name in signatures for name in _SPLIT):
            return None
        transform, model = (signatures[name] for name in _SPLIT)
        t_sig = _signature_of(transform, "transform", self.path)
        m_sig = _signature_of(model, "model", self.path)

        def names(specs: tuple[TensorSpec, ...]) -> list[str]:
            return sorted(s.name for s in specs)

        problem = None
        if names(t_sig.inputs) != names(self.signature.inputs):
            problem = (f"'transform' takes {names(t_sig.inputs)} but '{served}' takes "
                       f"{names(self.signature.inputs)}")
        elif missing := sorted(set(names(m_sig.inputs)) - set(names(t_sig.outputs))):
            problem = f"'model' needs {missing}, which 'transform' does not return"
        elif names(m_sig.outputs) != names(self.signature.outputs):
            problem = (f"'model' returns {names(m_sig.outputs)} but '{served}' returns "
                       f"{names(self.signature.outputs)}")
        if problem:
            raise DataError(f"SavedModel {self.path}: signatures 'transform' and 'model' do not "
                            f"chain: {problem}; fix the export or drop the two signatures")
        return transform, model, tuple(names(m_sig.inputs))

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``inputs`` and run the served signature."""
        return self._call(self._function, validate_inputs(self.signature, inputs))

    def predict_timed(
        self, inputs: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Run ``transform`` then ``model`` and time each, or the whole signature as ``compute``."""
        feeds = validate_inputs(self.signature, inputs)
        if self._split is None:
            start_s = time.perf_counter()
            outputs = self._call(self._function, feeds)
            return outputs, {"compute": time.perf_counter() - start_s}
        transform, model, model_inputs = self._split
        start_s = time.perf_counter()
        try:
            features = transform(**feeds)
        except self._invalid_argument as exc:
            raise WireError(f"rejected by the model: {_first_line(exc)}") from None
        transformed_s = time.perf_counter()
        outputs = self._call(model, {name: features[name] for name in model_inputs})
        done_s = time.perf_counter()
        return outputs, {"transform": transformed_s - start_s, "model": done_s - transformed_s}

    def _call(self, function: Any, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        try:
            results = function(**feeds)
        except self._invalid_argument as exc:
            raise WireError(f"rejected by the model: {_first_line(exc)}") from None
        outputs: dict[str, np.ndarray] = {}
        for spec in self.signature.outputs:
            value = results[spec.name].numpy()
            if spec.name in self._string_outputs:
                outputs[spec.name] = as_tensor(value, DType.BYTES)
            else:
                outputs[spec.name] = np.asarray(value)
        return outputs

    def start_profiling(self, out_dir: Path) -> None:
        """Start TensorFlow's profiler; its trace goes to ``out_dir/plugins/profile/<run>/``."""
        out_dir = Path(out_dir)
        with self._lock:
            if self._profile_dir is not None:
                raise UsageError(f"profiling of {self.path} is already running; stop it first")
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._tf.profiler.experimental.start(str(out_dir))
            except self._tf.errors.AlreadyExistsError:
                raise UsageError("another TensorFlow profiler session is running in this "
                                 "process; stop it before profiling this model") from None
            self._profile_dir = out_dir

    def stop_profiling(self) -> Path:
        """Stop the profiler and return the run directory holding the ``*.xplane.pb`` trace."""
        with self._lock:
            if self._profile_dir is None:
                raise UsageError(f"profiling of {self.path} is not running; start it first")
            out_dir, self._profile_dir = self._profile_dir, None
            self._tf.profiler.experimental.stop()
        runs = [p for p in (out_dir / "plugins" / "profile").glob("*") if p.is_dir()]
        if not runs:
            return out_dir.resolve()
        # Run directories are named by the second they started; two runs within one second
        # share a name, so pick by the newest file written rather than by name.
        return max(runs, key=_newest_write_ns).resolve()


def _newest_write_ns(directory: Path) -> int:
    stamps = [p.stat().st_mtime_ns for p in directory.iterdir()]
    return max(stamps, default=directory.stat().st_mtime_ns)

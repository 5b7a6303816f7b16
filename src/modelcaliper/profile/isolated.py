"""Isolated profiling: the model in this process, on real rows, one profile per batch size.

For each batch size the model first runs ``warmup`` predictions (lazy initialisation, and
TensorFlow's own settling: it stops timing ops it finds cheap after about 90 executions,
see ``modelcaliper.profile.xspace``, so a profile taken after warm-up shows the steady
state a server reaches), then ``predictions`` timed without the profiler, then
``predictions`` with it. The two timings give the profiler's overhead for that batch size
(one short run each: a rough figure on a busy machine). ONNX Runtime profiles a second,
fresh session, so it first runs a few settling predictions (at most 5, no more than
``warmup``) that its profile leaves out.

Predictions go through the same runtime classes as the embedded server
(``modelcaliper.server.runtimes``), including the split of a TensorFlow model into its
``transform`` and ``model`` signatures when it exports both, so the isolated profile and
the one taken under load describe the same calls. Input batches are cut before any clock
starts, cycling through the rows when a batch size exceeds them.

Files (``out_dir/batch_<n>/``): TensorFlow's TensorBoard log directory
(``plugins/profile/<run>/*.xplane.pb``) or ONNX Runtime's ``onnxruntime_profile_*.json``,
``trace.json`` (Chrome trace for Perfetto; for ONNX Runtime its own JSON is the trace) and
``profile.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from modelcaliper.errors import DataError, UsageError
from modelcaliper.profile.base import TRACE_FILE, ProfileResult, write_profile
from modelcaliper.profile.grouping import Grouper

__all__ = ["GRAPHS", "IsolatedSettings", "cut_batches", "profile_isolated", "runtime_kind"]

GRAPHS = ("optimized", "original")
"""ONNX graphs to profile: what ONNX Runtime runs, or the model's nodes as written."""

_ONNX_SETTLE = 5
_EXTRAS = {"tensorflow": ("tensorflow", "tensorflow"), "onnx": ("onnxruntime", "onnx")}


@dataclass(frozen=True)
class IsolatedSettings:
    """How ``profile_isolated`` runs the model; counts are predictions per batch size."""

    batch_sizes: tuple[int, ...] = (5, 25)
    predictions: int = 20
    warmup: int = 100
    graph: str = "optimized"
    signature_name: str | None = None
    split_timing: bool = True
    top_n: int = 10

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"--batch-size needs sizes ≥ 1, got {list(self.batch_sizes)}")
        if self.predictions < 1:
            raise UsageError(f"--predictions must be ≥ 1, got {self.predictions}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be ≥ 0, got {self.warmup}")
        if self.graph not in GRAPHS:
            raise UsageError(f"--graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}")


def runtime_kind(model_path: str | Path) -> str:
    """``tensorflow`` or ``onnx`` for the model at ``model_path``; MissingExtraError naming the
    extra to install when that runtime is not installed."""
    from modelcaliper.server.runtimes import resolve_artifact
    from modelcaliper.server.runtimes.base import import_optional

    kind, artifact, _ = resolve_artifact(model_path)
    module, extra = _EXTRAS[kind]
    import_optional(module, extra, f"profiling the {kind} model {artifact}")
    return kind


def cut_batches(inputs: Mapping[str, np.ndarray], batch_size: int,
                count: int) -> list[dict[str, np.ndarray]]:
    """``count`` batches of ``batch_size`` consecutive rows, wrapping around the rows."""
    rows = {len(v) for v in inputs.values()}
    if len(rows) != 1 or 0 in rows:
        raise DataError(f"profiling needs inputs with one, non-zero number of rows; got "
                        f"{ {k: len(v) for k, v in inputs.items()} }")
    total = rows.pop()
    batches = []
    for i in range(count):
        index = (np.arange(batch_size) + i * batch_size) % total
        batches.append({name: np.asarray(value)[index] for name, value in inputs.items()})
    return batches


def profile_isolated(
    model_path: str | Path,
    inputs: Mapping[str, np.ndarray],
    out_dir: str | Path,
    settings: IsolatedSettings | None = None,
    grouper: Grouper | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[ProfileResult]:
    """Profile the model at ``model_path`` on ``inputs`` (whole columns), one result per batch
    size, each written to ``out_dir/batch_<n>/profile.json``."""
    from modelcaliper.server.runtimes import open_runtime, predict_timed, resolve_artifact

    settings = settings or IsolatedSettings()
    grouper = grouper or Grouper()
    kind = runtime_kind(model_path)
    _, artifact, _ = resolve_artifact(model_path)
    if kind == "tensorflow" and settings.graph != "optimized":
        raise UsageError("--graph original applies to ONNX models only; a SavedModel runs "
                         "its graph as exported")
    runtime = open_runtime(
        model_path, signature_name=settings.signature_name,
        graph_optimization="all" if settings.graph == "optimized" else "disable",
    )
    split = kind == "tensorflow" and settings.split_timing

    def predict(batch: Mapping[str, np.ndarray]) -> object:
        return predict_timed(runtime, batch) if split else runtime.predict(batch)
    out = Path(out_dir)
    say = progress or (lambda _text: None)
    results = []
    for batch_size in settings.batch_sizes:
        say(f"batch {batch_size}: {settings.warmup} warm-up + {settings.predictions} timed + "
            f"{settings.predictions} profiled predictions")
        for batch in cut_batches(inputs, batch_size, settings.warmup):
            predict(batch)
        batches = cut_batches(inputs, batch_size, settings.predictions)
        plain_s = _timed(predict, batches)
        where = out / f"batch_{batch_size}"
        # ONNX Runtime profiles a fresh session: let it settle on a few predictions that the
        # conversion then leaves out, as the warm-up did for the plain session.
        settle = min(settings.warmup, _ONNX_SETTLE) if kind == "onnx" else 0
        runtime.start_profiling(where)
        try:
            for batch in batches[:settle]:
                predict(batch)
            profiled_s = _timed(predict, batches)
        finally:
            raw = runtime.stop_profiling()
        label, wall_us = f"batch {batch_size}", profiled_s * 1e6
        if kind == "tensorflow":
            from modelcaliper.profile.tensorflow import convert_tf_profile

            result = convert_tf_profile(raw, grouper=grouper, model_path=artifact,
                                        trace_path=where / TRACE_FILE, label=label,
                                        batch_size=batch_size,
                                        predictions=settings.predictions, wall_us=wall_us)
        else:
            from modelcaliper.profile.onnx import convert_onnx_profile

            result = convert_onnx_profile(raw, grouper=grouper, label=label,
                                          batch_size=batch_size, skip_runs=settle,
                                          predictions=settings.predictions, wall_us=wall_us)
        result = replace(result, overhead_ratio=round(profiled_s / plain_s, 3)
                         if plain_s > 0 else None)
        write_profile(result, where, settings.top_n)
        results.append(result)
    return results


def _timed(predict: Callable[[Mapping[str, np.ndarray]], object],
           batches: Sequence[Mapping[str, np.ndarray]]) -> float:
    start_s = time.perf_counter()
    for batch in batches:
        predict(batch)
    return time.perf_counter() - start_s

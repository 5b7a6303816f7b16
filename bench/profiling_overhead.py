"""Profiling overhead: how much slower predictions run while the runtime's profiler is on.

Models (batch 25, in this process, through the embedded server's runtime classes):

* ``demo v1`` / ``demo v2``: the demo ranking model (``modelcaliper.demo``), built once with
  the demo's real feature widths on a small data set; v1 has the row-by-row transform, whose
  thousands of small op executions per prediction are the profiler's worst case;
* ``ranking``: the small Keras ranking model of ``tests/models.py`` (transform + model);
* ``onnx mlp``: the ONNX MLP 300 → 256 → 128 → 1 of ``tests/models.py``.

Each model is warmed up (``--warmup`` predictions), then measured in ``--rounds`` interleaved
rounds: ``--count`` predictions with the profiler off, then ``--count`` with it on (for ONNX
Runtime, whose profiling runs in a fresh session, after 5 settling predictions). Every
prediction is timed on its own; the ratio printed is median(profiled) / median(plain) over
all rounds. Starting and stopping the profiler (TensorFlow writes its ``.xplane.pb`` on stop)
and converting one capture to ``OpStat`` rows are timed separately and not in the ratio.

Run: ``.venv/bin/python bench/profiling_overhead.py [--count 50] [--rounds 3] [--no-demo]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/models.py builds the small models
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 25


def _demo_models(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    from modelcaliper.demo.data import FeatureLayout, write_dataset
    from modelcaliper.demo.model import TrainConfig, build_models
    from modelcaliper.server.runtimes import read_signature
    from modelcaliper.workload import map_inputs, read_columns

    layout = FeatureLayout()
    data = write_dataset(folder / "train.parquet", layout, queries=8, candidates=250, seed=5)
    built = build_models(folder, data.path, layout, TrainConfig(epochs=1))
    found = {}
    for name, version in zip(("demo v1", "demo v2"), built.versions, strict=True):
        inputs = map_inputs(read_columns(data.path, limit=500), read_signature(version)).tensors
        found[name] = (version, inputs)
    return found


def _small_models(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    from tests.models import build_onnx_mlp, build_tf_ranking_model, mlp_inputs, ranking_inputs

    return {
        "ranking": (build_tf_ranking_model(folder / "ranking"), ranking_inputs(500)),
        "onnx mlp": (build_onnx_mlp(folder / "mlp.onnx"), mlp_inputs(500)),
    }


def _time_each(predict: Callable[[Mapping[str, Any]], object],
               batches: list[dict[str, Any]]) -> list[float]:
    times = []
    for batch in batches:
        start_s = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start_s)
    return times


def measure(name: str, path: Path, inputs: Mapping[str, Any], args: argparse.Namespace,
            out: Path) -> dict[str, Any]:
    """Plain and profiled per-prediction times of one model, and the profiler's fixed costs."""
    from modelcaliper.profile.capture import convert_capture
    from modelcaliper.profile.isolated import cut_batches
    from modelcaliper.server.runtimes import open_runtime, predict_timed

    runtime = open_runtime(path)
    tf_model = runtime.platform == "tensorflow_savedmodel"

    def predict(batch: Mapping[str, Any]) -> object:
        return predict_timed(runtime, batch) if tf_model else runtime.predict(batch)

    batches = cut_batches(inputs, BATCH, args.count)
    for batch in cut_batches(inputs, BATCH, args.warmup):
        predict(batch)
    plain: list[float] = []
    profiled: list[float] = []
    switch_s: list[float] = []
    raw = None
    for round_index in range(args.rounds):
        plain += _time_each(predict, batches)
        started = time.perf_counter()
        runtime.start_profiling(out / name.replace(" ", "_") / f"round_{round_index}")
        switch = time.perf_counter() - started
        if not tf_model:
            for batch in batches[:5]:
                predict(batch)
        profiled += _time_each(predict, batches)
        started = time.perf_counter()
        raw = runtime.stop_profiling()
        switch_s.append(switch + time.perf_counter() - started)
    started = time.perf_counter()
    result = convert_capture(runtime.platform, Path(raw or ""),
                             model_path=path if tf_model else None)
    convert_s = time.perf_counter() - started
    return {
        "model": name, "plain_ms": statistics.median(plain) * 1e3,
        "profiled_ms": statistics.median(profiled) * 1e3,
        "ratio": statistics.median(profiled) / statistics.median(plain),
        "switch_s": statistics.median(switch_s), "convert_s": convert_s,
        "top": result.ops[0].name if result.ops else "-",
        "transform_share": result.summary().share_of("transform"),
    }


def main() -> int:
    """Measure every model and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="predictions per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=200, help="predictions before measuring")
    parser.add_argument("--no-demo", action="store_true", help="skip building the demo model")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine shared with others)")
    with tempfile.TemporaryDirectory(prefix="caliper-profiling-bench-") as tmp:
        folder = Path(tmp)
        models = {} if args.no_demo else _demo_models(folder / "demo")
        models.update(_small_models(folder))
        rows = [measure(name, path, inputs, args, folder / "captures")
                for name, (path, inputs) in models.items()]
    print(f"\nbatch {BATCH}, {args.rounds} rounds x {args.count} predictions per mode; "
          "ratio = median profiled / median plain")
    print(f"{'model':10} {'plain ms':>9} {'profiled ms':>12} {'ratio':>6} {'start+stop s':>13} "
          f"{'convert s':>10} {'transform':>10}  top op")
    for row in rows:
        print(f"{row['model']:10} {row['plain_ms']:9.3f} {row['profiled_ms']:12.3f} "
              f"{row['ratio']:6.2f} {row['switch_s']:13.3f} {row['convert_s']:10.3f} "
              f"{row['transform_share']:10.1%}  {row['top']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

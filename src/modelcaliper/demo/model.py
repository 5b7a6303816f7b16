"""The demo ranking model: Keras preprocessing plus a DNN, trained and exported in two versions.

Inputs (one row per candidate): ``numeric`` FP32 [-1, N], ``categorical`` BYTES [-1, C] and
``context`` FP32 [-1, X], as ``demo.data`` writes them. Output: ``score`` FP32 [-1, 1].

The transform (``demo.features``) returns ``dense`` (FP32) and ``ids`` (INT64, offsets into
one shared embedding table); version 1 computes it column by column and row by row, version 2
with a few wide ops. The network embeds ``ids``, concatenates ``dense`` and scores with three
ReLU layers (512-256-128) and a sigmoid. Both versions share every weight.

Each SavedModel exports ``serving_default``, ``transform`` and ``model`` (see
``modelcaliper.server.runtimes.tensorflow``), so the embedded server times the two phases.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelcaliper.demo.data import FeatureLayout
from modelcaliper.demo.features import Features
from modelcaliper.errors import DataError

__all__ = ["BUILDER_VERSION", "MODEL_NAME", "BuildReport", "TrainConfig", "auc", "build_models",
           "is_built", "load_training_data"]

BUILDER_VERSION = "2"
"""Bumped whenever the model code changes, so cached artifacts are rebuilt."""

MODEL_NAME = "ranker"
_STAMP = "ranker.build.json"


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the build: network sizes, encodings, training budget, seed."""

    hidden: tuple[int, ...] = (512, 256, 128)
    embedding_dim: int = 16
    lookup_max_tokens: int = 1000
    hash_bins: int = 2048
    buckets: int = 10
    epochs: int = 2
    """Passes over the training queries (more overfits the hashed embeddings)."""
    batch_rows: int = 512
    seed: int = 0


@dataclass(frozen=True)
class BuildReport:
    """Where the two versions are, how well the model learned, and how long building took."""

    base_path: Path
    versions: tuple[Path, ...]
    auc: float
    accuracy: float
    positive_rate: float
    build_s: float
    cached: bool


def load_training_data(path: str | Path) -> dict[str, np.ndarray]:
    """The demo Parquet file as numpy arrays, read as ``caliper run --data`` reads it."""
    import pyarrow.parquet as pq

    from modelcaliper.workload.datasets import to_numpy_columns

    return to_numpy_columns(pq.read_table(path))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic; ties get their mean rank)."""
    labels = np.asarray(labels).ravel() > 0.5
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Mean rank of each run of equal scores, so ties count one half.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _network(features: Features, dense_width: int, n_ids: int, config: TrainConfig) -> Any:
    import keras

    dense = keras.Input(shape=(dense_width,), dtype="float32", name="dense")
    ids = keras.Input(shape=(n_ids,), dtype="int64", name="ids")
    embedded = keras.layers.Embedding(features.id_space, config.embedding_dim, name="embedding",
                                      embeddings_initializer=keras.initializers.RandomNormal(
                                          stddev=0.05, seed=config.seed))(ids)
    flat = keras.layers.Flatten(name="flat_ids")(embedded)
    x = keras.layers.Concatenate(name="joined")([dense, flat])
    for i, units in enumerate(config.hidden):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}",
                               kernel_initializer=keras.initializers.GlorotUniform(
                                   seed=config.seed + i))(x)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model({"dense": dense, "ids": ids}, score, name="ranker_net")


def _exported(features: Features, net: Any, slow: bool, dense_width: int, n_ids: int) -> Any:
    import tensorflow as tf

    layout = features.layout
    raw = [tf.TensorSpec([None, layout.numeric], tf.float32, name="numeric"),
           tf.TensorSpec([None, layout.categorical], tf.string, name="categorical"),
           tf.TensorSpec([None, layout.context], tf.float32, name="context")]
    inner = [tf.TensorSpec([None, dense_width], tf.float32, name="dense"),
             tf.TensorSpec([None, n_ids], tf.int64, name="ids")]

    class Ranker(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.net = features, net
            self.vocabulary = features.vocabulary
            self.layers = [features.numeric_norm, features.context_norm,
                           *[layer for _, *pair in features.buckets for layer in pair],
                           *[layer for _, *pair in features.onehot for layer in pair],
                           *[layer for _, layer, _ in features.embedded]]

        @tf.function(input_signature=raw)
        def transform(self, numeric, categorical, context):  # type: ignore[no-untyped-def]
            return self.features.transform(numeric, categorical, context, slow=slow)

        @tf.function(input_signature=inner)
        def model(self, dense, ids):  # type: ignore[no-untyped-def]
            return {"score": self.net({"dense": dense, "ids": ids})}

        @tf.function(input_signature=raw)
        def serve(self, numeric, categorical, context):  # type: ignore[no-untyped-def]
            return self.model(**self.transform(numeric, categorical, context))

    return Ranker()


def _train(features: Features, data: dict[str, np.ndarray],
           config: TrainConfig) -> tuple[Any, float, float, int, int]:
    import keras
    import tensorflow as tf

    fast = tf.function(lambda n, c, x: features.transform(n, c, x, slow=False))
    parts = [fast(tf.constant(data["numeric"][i:i + 8192]),
                  tf.constant(data["categorical"][i:i + 8192].astype(bytes)),
                  tf.constant(data["context"][i:i + 8192]))
             for i in range(0, len(data["label"]), 8192)]
    dense = np.concatenate([p["dense"].numpy() for p in parts])
    ids = np.concatenate([p["ids"].numpy() for p in parts])
    labels = data["label"].astype(np.float32)
    # Hold out the last fifth of the queries (whole queries, as a ranking evaluation should).
    queries = np.unique(data["query_id"])
    held = np.isin(data["query_id"], queries[int(len(queries) * 0.8):]) if len(queries) > 1 \
        else np.zeros(len(labels), bool)
    if held.all() or not held.any():
        held = np.arange(len(labels)) >= int(len(labels) * 0.8)
    keras.utils.set_random_seed(config.seed)
    net = _network(features, dense.shape[1], ids.shape[1], config)
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    train_x = {"dense": dense[~held], "ids": ids[~held]}
    net.fit(train_x, labels[~held], batch_size=config.batch_rows, epochs=config.epochs,
            verbose=0, shuffle=True)
    scores = net.predict({"dense": dense[held], "ids": ids[held]}, batch_size=4096, verbose=0)
    accuracy = float(((scores.ravel() > 0.5) == (labels[held] > 0.5)).mean())
    return net, auc(labels[held], scores), accuracy, dense.shape[1], ids.shape[1]


def _stamp(layout: FeatureLayout, config: TrainConfig, data_path: Path) -> dict[str, Any]:
    stat = data_path.stat()
    stamp = {"builder": BUILDER_VERSION, "layout": asdict(layout), "config": asdict(config),
             "data": {"path": str(data_path.resolve()), "bytes": stat.st_size,
                      "mtime_ns": stat.st_mtime_ns}}
    return dict(json.loads(json.dumps(stamp)))  # as it reads back: tuples become lists


def _current_stamp(out: Path, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The stored build record when ``out`` holds both versions built exactly as ``stamp``."""
    stamp_path = out / _STAMP
    versions = [out / MODEL_NAME / v / "saved_model.pb" for v in ("1", "2")]
    if not stamp_path.is_file() or not all(v.is_file() for v in versions):
        return None
    previous: dict[str, Any] = json.loads(stamp_path.read_text())
    return previous if {k: previous.get(k) for k in stamp} == stamp else None


def is_built(out_dir: str | Path, data_path: str | Path, layout: FeatureLayout | None = None,
             config: TrainConfig | None = None) -> bool:
    """Whether ``build_models`` would reuse what ``out_dir`` holds instead of rebuilding."""
    data_path = Path(data_path)
    if not data_path.is_file():
        return False
    stamp = _stamp(layout or FeatureLayout(), config or TrainConfig(), data_path)
    return _current_stamp(Path(out_dir), stamp) is not None


def build_models(out_dir: str | Path, data_path: str | Path, layout: FeatureLayout | None = None,
                 config: TrainConfig | None = None, *, force: bool = False) -> BuildReport:
    """Train on ``data_path`` and export ``out_dir/ranker/{1,2}``, unless already built alike."""
    layout, config = layout or FeatureLayout(), config or TrainConfig()
    out, data_path = Path(out_dir), Path(data_path)
    if not data_path.is_file():
        raise DataError(f"demo training data {data_path} does not exist; generate it first")
    base = out / MODEL_NAME
    versions = (base / "1", base / "2")
    stamp = _stamp(layout, config, data_path)
    previous = None if force else _current_stamp(out, stamp)
    if previous is not None:
        return BuildReport(base, versions, previous["auc"], previous["accuracy"],
                           previous["positive_rate"], 0.0, cached=True)
    return _build(out, data_path, layout, config, stamp)


def _build(out: Path, data_path: Path, layout: FeatureLayout, config: TrainConfig,
           stamp: dict[str, Any]) -> BuildReport:
    started_s = time.perf_counter()
    import shutil

    import tensorflow as tf

    base = out / MODEL_NAME
    versions = (base / "1", base / "2")
    data = load_training_data(data_path)
    features = Features(layout, config, data)
    net, auc_value, accuracy, dense_width, n_ids = _train(features, data, config)
    (out / _STAMP).unlink(missing_ok=True)
    for version, slow in zip(versions, (True, False), strict=True):
        module = _exported(features, net, slow, dense_width, n_ids)
        partial = version.with_name(version.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        tf.saved_model.save(module, str(partial), signatures={
            "serving_default": module.serve, "transform": module.transform,
            "model": module.model})
        shutil.rmtree(version, ignore_errors=True)
        partial.rename(version)
    positive_rate = float(data["label"].mean())
    (out / _STAMP).write_text(json.dumps({**stamp, "auc": auc_value, "accuracy": accuracy,
                                          "positive_rate": positive_rate}, indent=2))
    return BuildReport(base, versions, auc_value, accuracy, positive_rate,
                       time.perf_counter() - started_s, cached=False)

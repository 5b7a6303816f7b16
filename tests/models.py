"""Builders of small test models, written at test time, plus valid inputs for each.

ONNX models are assembled node by node with ``onnx.helper``; the TensorFlow models are tiny
Keras models saved as SavedModels. Every builder is deterministic for a given seed and
returns the path it wrote. TensorFlow and ONNX are imported inside the builders, so importing
this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import ModelProto

__all__ = [
    "RANKING_COUNTRIES",
    "RANKING_FEATURES",
    "build_onnx_mlp",
    "build_onnx_multi_io",
    "build_tf_echo_model",
    "build_tf_ranking_model",
    "mlp_inputs",
    "multi_io_inputs",
    "ranking_inputs",
]

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # old enough for any recent ONNX Runtime

RANKING_COUNTRIES = ("us", "de", "fr", "jp")
RANKING_NUMERIC = 3
RANKING_HASH_BINS = 8
# Width of the transformed feature vector: normalised numerics, one-hot country (plus the
# out-of-vocabulary slot), one-hot hashed item id.
RANKING_FEATURES = RANKING_NUMERIC + len(RANKING_COUNTRIES) + 1 + RANKING_HASH_BINS


def _save_onnx(model: ModelProto, path: str | Path) -> Path:
    import onnx

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def build_onnx_mlp(
    path: str | Path,
    n_inputs: int = 300,
    hidden: Sequence[int] = (256, 128),
    outputs: int = 1,
    seed: int = 0,
) -> Path:
    """An MLP: FP32 input ``features`` [-1, n_inputs], ReLU hidden layers, sigmoid ``score``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    previous, width = "features", n_inputs
    layers = [*hidden, outputs]
    for i, units in enumerate(layers):
        w = (rng.standard_normal((width, units)) * np.sqrt(2.0 / width)).astype(np.float32)
        b = (rng.standard_normal(units) * 0.01).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        dense = f"dense{i}"
        nodes.append(helper.make_node("Gemm", [previous, f"w{i}", f"b{i}"], [dense]))
        last = i == len(layers) - 1
        activated = "score" if last else f"relu{i}"
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [dense], [activated]))
        previous, width = activated, units
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_inputs])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", outputs])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return _save_onnx(model, path)


def mlp_inputs(rows: int, n_inputs: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs for ``build_onnx_mlp``."""
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((rows, n_inputs)).astype(np.float32)}


def build_onnx_multi_io(path: str | Path) -> Path:
    """Four inputs of four dtypes (FP32, INT64, BYTES, BOOL) and four outputs; dynamic batch.

    ``score = dense @ [1, 2, 3, 4] + count`` ([-1, 1]), ``token_echo = token``,
    ``count_next = count + 1`` and ``flag_not = not flag``.
    """
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(np.array([[1], [2], [3], [4]], dtype=np.float32), "w"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
    ]
    nodes = [
        helper.make_node("MatMul", ["dense", "w"], ["product"]),
        helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["count_f", "axis1"], ["count_col"]),
        helper.make_node("Add", ["product", "count_col"], ["score"]),
        helper.make_node("Identity", ["token"], ["token_echo"]),
        helper.make_node("Add", ["count", "one"], ["count_next"]),
        helper.make_node("Not", ["flag"], ["flag_not"]),
    ]
    info = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "multi_io",
        [
            info("dense", TensorProto.FLOAT, ["batch", 4]),
            info("count", TensorProto.INT64, ["batch"]),
            info("token", TensorProto.STRING, ["batch"]),
            info("flag", TensorProto.BOOL, ["batch"]),
        ],
        [
            info("score", TensorProto.FLOAT, ["batch", 1]),
            info("token_echo", TensorProto.STRING, ["batch"]),
            info("count_next", TensorProto.INT64, ["batch"]),
            info("flag_not", TensorProto.BOOL, ["batch"]),
        ],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return _save_onnx(model, path)


def multi_io_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs for ``build_onnx_multi_io`` (tokens include non-ASCII UTF-8)."""
    rng = np.random.default_rng(seed)
    words = [b"alpha", "b\u00e9ta".encode(), b"", b"with space", "\u65e5\u672c".encode()]
    tokens = np.empty(rows, dtype=object)
    for i in range(rows):
        tokens[i] = words[int(rng.integers(len(words)))]
    return {
        "dense": rng.standard_normal((rows, 4)).astype(np.float32),
        "count": rng.integers(-50, 50, rows).astype(np.int64),
        "token": tokens,
        "flag": rng.random(rows) < 0.5,
    }


def build_tf_ranking_model(base_path: str | Path, version: int = 1) -> Path:
    """A tiny Keras ranking model saved as ``base_path/<version>/`` (a SavedModel).

    Inputs: ``numeric`` float32 [-1, 3] (Normalization), ``country`` string [-1]
    (StringLookup, one-hot) and ``item_id`` int64 [-1] (Hashing, one-hot); outputs ``score``
    [-1, 1] (sigmoid) and ``embedding`` [-1, 8]. Signatures: ``serving_default``, plus
    ``transform`` (raw inputs → ``features`` [-1, RANKING_FEATURES]) and ``model``
    (``features`` → outputs). Dense weights are seeded by ``version``, so versions differ.
    """
    import keras
    import tensorflow as tf

    numeric = keras.Input(shape=(RANKING_NUMERIC,), dtype="float32", name="numeric")
    country = keras.Input(shape=(1,), dtype="string", name="country")
    item_id = keras.Input(shape=(1,), dtype="int64", name="item_id")
    normalised = keras.layers.Normalization(mean=[1.0, 10.0, 100.0], variance=[1.0, 4.0, 25.0])
    lookup = keras.layers.StringLookup(vocabulary=list(RANKING_COUNTRIES), output_mode="one_hot")
    hashing = keras.layers.Hashing(num_bins=RANKING_HASH_BINS, output_mode="one_hot")
    features = keras.layers.Concatenate(name="features")(
        [normalised(numeric), lookup(country), hashing(item_id)]
    )
    prep = keras.Model([numeric, country, item_id], features, name="prep")

    inner = keras.Input(shape=(RANKING_FEATURES,), dtype="float32", name="features")
    glorot = keras.initializers.GlorotUniform
    hidden = keras.layers.Dense(8, activation="relu", kernel_initializer=glorot(seed=version))
    head = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=glorot(seed=version + 1))
    embedding = hidden(inner)
    score = head(embedding)
    net = keras.Model(inner, {"score": score, "embedding": embedding}, name="net")

    raw = [
        tf.TensorSpec([None, RANKING_NUMERIC], tf.float32, name="numeric"),
        tf.TensorSpec([None], tf.string, name="country"),
        tf.TensorSpec([None], tf.int64, name="item_id"),
    ]

    class Ranker(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prep, self.net = prep, net

        @tf.function(input_signature=raw)
        def transform(self, numeric, country, item_id):  # type: ignore[no-untyped-def]
            # The Keras inputs take one column per string/id feature; the signature takes
            # one scalar per row, as a serving client sends it.
            return {"features": self.prep([numeric, country[:, None], item_id[:, None]])}

        @tf.function(input_signature=[tf.TensorSpec([None, RANKING_FEATURES], tf.float32,
                                                    name="features")])
        def model(self, features):  # type: ignore[no-untyped-def]
            out = self.net(features)
            return {"score": out["score"], "embedding": out["embedding"]}

        @tf.function(input_signature=raw)
        def serve(self, numeric, country, item_id):  # type: ignore[no-untyped-def]
            return self.model(**self.transform(numeric, country, item_id))

    module = Ranker()
    out = Path(base_path) / str(version)
    tf.saved_model.save(
        module,
        str(out),
        signatures={"serving_default": module.serve, "transform": module.transform,
                    "model": module.model},
    )
    return out


def ranking_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs for ``build_tf_ranking_model`` (one in five countries is unknown)."""
    rng = np.random.default_rng(seed)
    names = [c.encode() for c in RANKING_COUNTRIES] + [b"zz"]
    country = np.empty(rows, dtype=object)
    for i in range(rows):
        country[i] = names[int(rng.integers(len(names)))]
    numeric = rng.normal([1.0, 10.0, 100.0], [1.0, 2.0, 5.0], (rows, RANKING_NUMERIC))
    return {
        "numeric": numeric.astype(np.float32),
        "country": country,
        "item_id": rng.integers(0, 10_000, rows).astype(np.int64),
    }


def build_tf_echo_model(path: str | Path) -> Path:
    """A SavedModel with string and any-rank tensors: ``text`` → ``text_upper``, ``value`` → ×2."""
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec(None, tf.float32, name="value")])
        def serve(self, text, value):  # type: ignore[no-untyped-def]
            return {"text_upper": tf.strings.upper(text), "value_doubled": value * 2.0}

    module = Echo()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)

"""Purpose-built models whose slowest operation is known in advance, and inputs for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["MAP_FN_FEATURES", "build_dominant_matmul_onnx", "build_map_fn_model",
           "dominant_matmul_inputs", "map_fn_inputs"]

MAP_FN_FEATURES = 8
DOMINANT_NODE = "wide_matmul"


def build_map_fn_model(path: str | Path, *, scope: str, body: str) -> Path:
    """A SavedModel whose ``scope`` runs a ``tf.map_fn`` over the rows, then a small dense layer.

    ``body`` is ``numeric`` (a chain of cheap arithmetic per row) or ``strings`` (each row's
    values formatted, lower-cased and measured as strings). Input ``x`` FP32 [-1, 8], output
    ``score`` FP32 [-1, 1]. The per-row loop costs far more than the dense layer.
    """
    import tensorflow as tf

    def numeric_row(row: tf.Tensor) -> tf.Tensor:
        value = row
        for _ in range(6):  # many tiny ops per row, like a hand-written feature chain
            value = tf.math.log1p(tf.abs(value)) * 1.5 + 0.25
        return value

    def string_row(row: tf.Tensor) -> tf.Tensor:
        text = tf.strings.lower(tf.strings.strip(tf.strings.as_string(row, precision=3)))
        return tf.cast(tf.strings.length(text), tf.float32)

    per_row = numeric_row if body == "numeric" else string_row

    class MapFnModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.linspace(-1, 1, MAP_FN_FEATURES, dtype=np.float32)[:, None])

        @tf.function(input_signature=[tf.TensorSpec([None, MAP_FN_FEATURES], tf.float32,
                                                    name="x")])
        def serve(self, x):  # type: ignore[no-untyped-def]
            with tf.name_scope(scope):
                features = tf.map_fn(per_row, x)
            with tf.name_scope("dense"):
                return {"score": tf.sigmoid(tf.matmul(features, self.w))}

    module = MapFnModel()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def map_fn_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs for ``build_map_fn_model``."""
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, MAP_FN_FEATURES)).astype(np.float32)}


def build_dominant_matmul_onnx(path: str | Path, *, n_inputs: int = 512, wide: int = 4096,
                               seed: int = 0) -> Path:
    """An MLP whose first node, ``wide_matmul`` (n_inputs → ``wide``, then a ``wide`` → 8 and an
    8 → 1 layer), does almost all the arithmetic; every node is named."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.models import ONNX_OPSET, _save_onnx

    rng = np.random.default_rng(seed)
    widths = [(n_inputs, wide), (wide, 8), (8, 1)]
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.05,
                                       f"w{i}") for i, shape in enumerate(widths)]
    nodes = [
        helper.make_node("MatMul", ["features", "w0"], ["h0"], name=DOMINANT_NODE),
        helper.make_node("Relu", ["h0"], ["a0"], name="wide_relu"),
        helper.make_node("MatMul", ["a0", "w1"], ["h1"], name="narrow_matmul"),
        helper.make_node("Relu", ["h1"], ["a1"], name="narrow_relu"),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="head_matmul"),
        helper.make_node("Sigmoid", ["h2"], ["score"], name="head_sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "dominant_matmul",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_inputs])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return _save_onnx(model, path)


def dominant_matmul_inputs(rows: int, n_inputs: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs for ``build_dominant_matmul_onnx``."""
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((rows, n_inputs)).astype(np.float32)}

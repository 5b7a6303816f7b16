"""The demo transform: version 2's wide ops compute exactly version 1's per-column features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelcaliper.demo.data import FeatureLayout, write_dataset
from modelcaliper.demo.features import Features
from modelcaliper.demo.model import TrainConfig, load_training_data

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

LAYOUTS = {
    # a few columns of each kind
    "small": FeatureLayout(numeric=14, categorical=4, context=3, discretized=2),
    # no bucketized columns at all
    "no-buckets": FeatureLayout(numeric=10, categorical=3, context=2, discretized=0),
    # the demo's real widths
    "full": FeatureLayout(),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def fitted(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Features, dict[str, np.ndarray]]:
    """Transform constants fitted on a little data of each layout, and that data."""
    layout = LAYOUTS[request.param]
    path = tmp_path_factory.mktemp(f"features-{request.param}") / "train.parquet"
    data = load_training_data(write_dataset(path, layout, queries=3, candidates=200,
                                            seed=5).path)
    return Features(layout, TrainConfig(), data), data


def both(features: Features, numeric: np.ndarray, categorical: np.ndarray,
         context: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    args = (tf.constant(numeric, tf.float32), tf.constant(categorical.astype(bytes)),
            tf.constant(context, tf.float32))
    slow = tf.function(lambda n, c, x: features.transform(n, c, x, slow=True))(*args)
    fast = tf.function(lambda n, c, x: features.transform(n, c, x, slow=False))(*args)
    return slow, fast


def assert_same(slow: dict[str, Any], fast: dict[str, Any]) -> None:
    np.testing.assert_allclose(slow["dense"].numpy(), fast["dense"].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(slow["ids"].numpy(), fast["ids"].numpy())


def test_training_rows_give_the_same_features(fitted: Any) -> None:
    features, data = fitted
    slow, fast = both(features, data["numeric"], data["categorical"], data["context"])
    assert fast["dense"].shape[0] == len(data["label"])
    assert_same(slow, fast)


HOSTILE = [
    # unseen tokens: each column's out-of-vocabulary slot (or a hash bucket)
    ("unseen", lambda s: np.full_like(s, "zz-never-seen-token")),
    # blanks and whitespace: "__missing__"
    ("blank", lambda s: np.full_like(s, "   ")),
    # upper case, punctuation and over-long strings are cleaned before the lookup
    ("messy", lambda s: np.array([f"  {v.upper()}!?{'x' * 30}" for v in s.ravel()],
                                 dtype=object).reshape(s.shape)),
    # another column's value: the column prefix keeps vocabularies apart
    ("shifted", lambda s: np.roll(s, 1, axis=1)),
]


@pytest.mark.parametrize(("name", "mangle"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_strings_give_the_same_features(fitted: Any, name: str, mangle: Any) -> None:
    features, data = fitted
    rows = slice(0, 40)
    categorical = mangle(data["categorical"][rows].astype(str).astype(object))
    assert_same(*both(features, data["numeric"][rows], categorical, data["context"][rows]))


def at_bucket_edges(features: Features, numeric: np.ndarray) -> np.ndarray:
    """Rows whose bucketized columns sit on (or a rounding away from) their bucket edges."""
    numeric = numeric.copy()
    for index, discretize, _ in features.buckets:
        column = features.layout.numeric_columns[index]
        edges = np.asarray(discretize.bin_boundaries, np.float64) / column.scale
        raw = np.expm1(edges) if column.log else edges
        numeric[:len(raw), index] = raw[:len(numeric)]
    return numeric


NUMERIC = [
    # NaN everywhere: every column reads 0
    ("nan", lambda f, x: np.full_like(x, np.nan)),
    # far out of range both ways: clipped, landing in the outermost buckets
    ("huge", lambda f, x: np.where(np.arange(len(x))[:, None] % 2 == 0, 1e9, -1e9)
     .astype(np.float32) * np.ones_like(x)),
    # on the bucket edges: a value equal to an edge goes to the upper bucket in both
    ("edges", at_bucket_edges),
]


@pytest.mark.parametrize(("name", "mangle"), NUMERIC, ids=[n[0] for n in NUMERIC])
def test_extreme_numbers_give_the_same_features(fitted: Any, name: str, mangle: Any) -> None:
    features, data = fitted
    numeric = mangle(features, data["numeric"][:40])
    assert_same(*both(features, numeric, data["categorical"][:40], data["context"][:40]))


def test_wide_transform_runs_a_few_dozen_ops(fitted: Any) -> None:
    features, data = fitted
    spec = [tf.TensorSpec([None, data[k].shape[1]], tf.string if k == "categorical"
                          else tf.float32) for k in ("numeric", "categorical", "context")]

    def op_count(slow: bool) -> int:
        fn = tf.function(lambda n, c, x: features.transform(n, c, x, slow=slow))
        graph = fn.get_concrete_function(*spec).graph
        return len(graph.get_operations())

    wide, per_column = op_count(False), op_count(True)
    print(f"graph ops: v1 {per_column}, v2 {wide}")
    assert wide < 120
    if features.layout == LAYOUTS["full"]:
        assert wide * 8 < per_column

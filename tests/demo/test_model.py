"""The demo ranking model: build, signatures, v1 ≡ v2, v1's slow transform, caching, AUC."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.demo import model as demo_model
from modelcaliper.demo.data import FeatureLayout, write_dataset
from modelcaliper.demo.model import (
    BuildReport,
    TrainConfig,
    auc,
    build_models,
    is_built,
    load_training_data,
)
from modelcaliper.errors import DataError
from modelcaliper.wire.tensors import DType

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")

TRAIN = TrainConfig(hidden=(32,), epochs=3, batch_rows=256)


@dataclass(frozen=True)
class Built:
    """One build: where it is, its layout, its data and its report."""

    out: Path
    layout: FeatureLayout
    data_path: Path
    report: BuildReport
    config: TrainConfig


SIZES = {
    # a few columns of each kind, enough rows to learn from
    "small": (FeatureLayout(numeric=14, categorical=4, context=3, discretized=2), 20, 500),
    # the demo's real widths, little data (export and timing only)
    "full": (FeatureLayout(), 4, 250),
}


def build(name: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    layout, queries, candidates = SIZES[name]
    out = tmp_path_factory.mktemp(f"model-{name}")
    data = write_dataset(out / "train.parquet", layout, queries=queries, candidates=candidates,
                         seed=11)
    report = build_models(out, data.path, layout, TRAIN)
    return Built(out, layout, data.path, report, TRAIN)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Both versions built with the small layout."""
    return build("small", tmp_path_factory)


@pytest.fixture(scope="module")
def full_build(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Both versions built with the demo's real widths."""
    return build("full", tmp_path_factory)


@pytest.fixture(scope="module", params=sorted(SIZES))
def built(request: pytest.FixtureRequest) -> Built:
    """Both versions built for each of ``SIZES`` in turn."""
    return request.getfixturevalue(f"{request.param}_build")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def feeds(built: Built) -> dict[str, Any]:
    """The first 100 rows of the build's data as the model's raw inputs."""
    data = load_training_data(built.data_path)
    return {"numeric": tf.constant(data["numeric"][:100]),
            "categorical": tf.constant(data["categorical"][:100].astype(bytes)),
            "context": tf.constant(data["context"][:100])}


def load(built: Built, version: int) -> Any:
    return tf.saved_model.load(str(built.report.base_path / str(version)))


def test_both_versions_are_saved_models_in_a_base_path(built: Built) -> None:
    from modelcaliper.server.runtimes import resolve_artifact

    assert not built.report.cached
    assert [p.name for p in built.report.versions] == ["1", "2"]
    kind, artifact, version = resolve_artifact(built.report.base_path)
    assert (kind, artifact.name, version) == ("tensorflow", "2", "2")


def test_signatures_chain_transform_into_model(built: Built) -> None:
    from modelcaliper.server.runtimes.tensorflow import read_tf_signature

    for version in built.report.versions:
        served = read_tf_signature(version)
        transform = read_tf_signature(version, "transform")
        model = read_tf_signature(version, "model")
        assert [(s.name, s.dtype, s.shape) for s in served.inputs] == [
            ("categorical", DType.BYTES, (-1, built.layout.categorical)),
            ("context", DType.FP32, (-1, built.layout.context)),
            ("numeric", DType.FP32, (-1, built.layout.numeric)),
        ]
        assert transform.inputs == served.inputs
        assert {s.name for s in model.inputs} == {s.name for s in transform.outputs}
        assert model.outputs == served.outputs
        assert [(s.name, s.dtype, s.shape) for s in served.outputs] == [
            ("score", DType.FP32, (-1, 1))]


def test_runtime_times_transform_and_model_separately(built: Built,
                                                      feeds: dict[str, Any]) -> None:
    from modelcaliper.server.runtimes.tensorflow import TensorFlowRuntime

    runtime = TensorFlowRuntime(built.report.base_path / "2")
    inputs = {name: value.numpy() for name, value in feeds.items()}
    outputs, phases = runtime.predict_timed(inputs)
    assert set(phases) == {"transform", "model"} and all(v > 0 for v in phases.values())
    np.testing.assert_allclose(outputs["score"], runtime.predict(inputs)["score"], rtol=1e-6)
    assert ((outputs["score"] > 0) & (outputs["score"] < 1)).all()


def test_v1_and_v2_compute_the_same_features_and_scores(built: Built,
                                                        feeds: dict[str, Any]) -> None:
    v1, v2 = load(built, 1), load(built, 2)
    t1, t2 = v1.signatures["transform"](**feeds), v2.signatures["transform"](**feeds)
    np.testing.assert_allclose(t1["dense"].numpy(), t2["dense"].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(t1["ids"].numpy(), t2["ids"].numpy())
    s1 = v1.signatures["serving_default"](**feeds)["score"].numpy()
    s2 = v2.signatures["serving_default"](**feeds)["score"].numpy()
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-6)
    chained = v1.signatures["model"](**t1)["score"].numpy()
    np.testing.assert_allclose(chained, s1, rtol=1e-6, atol=1e-7)


def test_v1_transform_is_several_times_slower_at_batch_25(full_build: Built) -> None:
    data = load_training_data(full_build.data_path)
    batch = {"numeric": tf.constant(data["numeric"][:25]),
             "categorical": tf.constant(data["categorical"][:25].astype(bytes)),
             "context": tf.constant(data["context"][:25])}
    transforms = {v: load(full_build, v).signatures["transform"] for v in (1, 2)}
    for fn in transforms.values():
        for _ in range(5):
            fn(**batch)
    times: dict[int, list[float]] = {1: [], 2: []}
    # Interleaved, so a busy moment on the machine hits both versions alike.
    for version in itertools.islice(itertools.cycle((1, 2)), 80):
        started = time.perf_counter()
        transforms[version](**batch)
        times[version].append(time.perf_counter() - started)
    ratio = float(np.median(times[1]) / np.median(times[2]))
    print(f"v1/v2 transform time at batch 25: {ratio:.1f}x "
          f"({np.median(times[1]) * 1e3:.2f} ms vs {np.median(times[2]) * 1e3:.2f} ms)")
    assert ratio >= 3.0


def test_the_model_learns_the_signal(small_build: Built) -> None:
    assert small_build.report.auc > 0.7
    assert 0.05 < small_build.report.positive_rate < 0.4


def test_a_second_build_reuses_the_first(built: Built) -> None:
    pb = built.report.versions[0] / "saved_model.pb"
    written_ns = pb.stat().st_mtime_ns
    again = build_models(built.out, built.data_path, built.layout, built.config)
    assert again.cached and again.auc == built.report.auc
    assert pb.stat().st_mtime_ns == written_ns


STALE = [
    # another number of epochs
    lambda b, mp: is_built(b.out, b.data_path, b.layout, replace(b.config, epochs=9)),
    # another layout
    lambda b, mp: is_built(b.out, b.data_path, replace(b.layout, discretized=1), b.config),
    # a newer builder
    lambda b, mp: (mp.setattr(demo_model, "BUILDER_VERSION", "next"),
                   is_built(b.out, b.data_path, b.layout, b.config))[1],
    # data that is gone
    lambda b, mp: is_built(b.out, b.out / "missing.parquet", b.layout, b.config),
]


@pytest.mark.parametrize("check", STALE)
def test_changed_inputs_or_builder_mean_a_rebuild(built: Built, check: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_built(built.out, built.data_path, built.layout, built.config)
    assert not check(built, monkeypatch)


def test_missing_data_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_models(tmp_path, tmp_path / "nope.parquet")


AUC_CASES = [
    # perfectly separated
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
    # perfectly inverted
    ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),
    # all tied: chance
    ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
    # one of four pairs misordered
    ([0, 1, 0, 1], [0.1, 0.3, 0.4, 0.9], 0.75),
]


@pytest.mark.parametrize(("labels", "scores", "expected"), AUC_CASES)
def test_auc_cases(labels: list[int], scores: list[float], expected: float) -> None:
    assert auc(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_auc_of_one_class_is_nan() -> None:
    assert np.isnan(auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=30))
def test_auc_equals_the_pairwise_definition(pairs: list[tuple[bool, int]]) -> None:
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], dtype=float)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auc(labels, scores) == pytest.approx(wins / (len(pos) * len(neg)))

"""The TensorFlow SavedModel runtime, on the session's tiny Keras ranking model."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from modelcaliper.errors import DataError, MissingExtraError, UsageError, WireError
from modelcaliper.server.runtimes import (
    Runtime,
    TimedRuntime,
    open_runtime,
    predict_timed,
    read_signature,
)
from modelcaliper.server.runtimes.tensorflow import TensorFlowRuntime
from modelcaliper.signature import TensorSpec
from modelcaliper.wire.tensors import DType
from tests.models import RANKING_FEATURES, ranking_inputs

RANKING_INPUTS = (
    TensorSpec("country", DType.BYTES, (-1,)),
    TensorSpec("item_id", DType.INT64, (-1,)),
    TensorSpec("numeric", DType.FP32, (-1, 3)),
)
RANKING_OUTPUTS = (
    TensorSpec("embedding", DType.FP32, (-1, 8)),
    TensorSpec("score", DType.FP32, (-1, 1)),
)


@pytest.fixture(scope="module")
def ranking(tf_ranking_base: Path) -> TensorFlowRuntime:
    """The highest version of the ranking model, loaded once for this module."""
    runtime = open_runtime(tf_ranking_base)
    assert isinstance(runtime, TensorFlowRuntime)
    return runtime


def _direct(version_dir: Path, feed: dict[str, np.ndarray], signature: str = "serving_default"
            ) -> dict[str, np.ndarray]:
    """Outputs of the SavedModel called straight through TensorFlow."""
    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    out = function(**{k: tf.constant(v) for k, v in feed.items()})
    return {k: v.numpy() for k, v in out.items()}


# --- signatures and versions -------------------------------------------------------------

def test_signature_names_dtypes_and_dynamic_dims(
    ranking: TensorFlowRuntime, tf_ranking_base: Path
) -> None:
    assert ranking.signature.inputs == RANKING_INPUTS
    assert ranking.signature.outputs == RANKING_OUTPUTS
    assert ranking.signature.name == "serving_default"
    assert (ranking.platform, ranking.version) == ("tensorflow_savedmodel", "2")
    assert read_signature(tf_ranking_base) == ranking.signature
    assert isinstance(ranking, Runtime) and isinstance(ranking, TimedRuntime)


@pytest.mark.parametrize(("name", "inputs", "outputs"), [
    # the preprocessing half: raw features in, one transformed vector out
    ("transform", RANKING_INPUTS, (TensorSpec("features", DType.FP32, (-1, RANKING_FEATURES)),)),
    # the model half
    ("model", (TensorSpec("features", DType.FP32, (-1, RANKING_FEATURES)),), RANKING_OUTPUTS),
])
def test_read_named_signatures(tf_ranking_base: Path, name: str, inputs: tuple, outputs: tuple
                               ) -> None:
    sig = read_signature(tf_ranking_base, name)
    assert (sig.name, sig.inputs, sig.outputs) == (name, inputs, outputs)


def test_version_selection(tf_ranking_base: Path, ranking: TensorFlowRuntime) -> None:
    first = open_runtime(tf_ranking_base, version=1)
    assert first.version == "1" and ranking.version == "2"
    feed = ranking_inputs(6, seed=4)
    v1, v2 = first.predict(feed), ranking.predict(feed)
    np.testing.assert_array_equal(v1["score"], _direct(tf_ranking_base / "1", feed)["score"])
    assert not np.array_equal(v1["score"], v2["score"])  # versions are seeded differently
    with pytest.raises(DataError, match=r"no servable version '5' .*1, 2"):
        open_runtime(tf_ranking_base, version=5)


# --- predictions -------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [1, 25])
def test_predict_equals_a_direct_tf_call(
    ranking: TensorFlowRuntime, tf_ranking_base: Path, rows: int
) -> None:
    feed = ranking_inputs(rows, seed=rows)
    got = ranking.predict(feed)
    want = _direct(tf_ranking_base / "2", feed)
    assert set(got) == {"score", "embedding"}
    for name in want:
        assert got[name].dtype == np.float32 and got[name].shape == want[name].shape
        np.testing.assert_array_equal(got[name], want[name])


def test_predict_timed_splits_transform_and_model(ranking: TensorFlowRuntime) -> None:
    feed = ranking_inputs(25, seed=9)
    outputs, phases = ranking.predict_timed(feed)
    assert set(phases) == {"transform", "model"}
    assert all(0 < seconds < 5 for seconds in phases.values())
    plain = ranking.predict(feed)
    for name in plain:
        np.testing.assert_array_equal(outputs[name], plain[name])
    assert predict_timed(ranking, feed)[1].keys() == {"transform", "model"}


def test_serving_one_half_has_no_split(tf_ranking_base: Path) -> None:
    model = open_runtime(tf_ranking_base, signature_name="model")
    features = np.zeros((2, RANKING_FEATURES), np.float32)
    outputs, phases = predict_timed(model, {"features": features})
    assert set(phases) == {"compute"} and outputs["score"].shape == (2, 1)


def test_string_outputs_and_any_rank_inputs(tf_echo_path: Path) -> None:
    echo = open_runtime(tf_echo_path)
    value = echo.signature.input("value")
    assert value.dtype is DType.FP32 and value.options.get("any_rank") is True
    assert echo.signature.outputs == (
        TensorSpec("text_upper", DType.BYTES, (-1,)),
        TensorSpec("value_doubled", DType.FP32, (-1,)),
    )
    for shaped in (np.array(1.5, np.float32), np.ones((2, 3, 2), np.float32)):
        out = echo.predict({"text": np.array([b"abc", "d\u00e9".encode()], dtype=object),
                            "value": shaped})
        assert out["text_upper"].dtype == object
        assert list(out["text_upper"]) == [b"ABC", "D\u00e9".encode()]
        np.testing.assert_array_equal(out["value_doubled"], np.asarray(shaped) * 2)
    # no transform/model signatures: the timing is one compute phase
    feed = {"text": np.array([b"x"], dtype=object), "value": np.ones(1, np.float32)}
    assert isinstance(echo, TimedRuntime)
    assert set(echo.predict_timed(feed)[1]) == {"compute"}


# --- validation --------------------------------------------------------------------------

_BAD = [
    # a required input left out
    ("missing", lambda f: {k: v for k, v in f.items() if k != "numeric"}, "numeric", "missing"),
    # a name the model does not take
    ("unknown", lambda f: {**f, "price": np.ones(3, np.float32)}, "price", "unknown input"),
    # numbers for the string feature
    ("INT64 for BYTES", lambda f: {**f, "country": np.arange(3)}, "country", "expected BYTES"),
    # strings for the numeric feature
    ("BYTES for FP32", lambda f: {**f, "numeric": np.full((3, 3), b"1.0", dtype=object)},
     "numeric", "got BYTES"),
    # floats for the integer id
    ("FP32 for INT64", lambda f: {**f, "item_id": np.ones(3, np.float32)}, "item_id",
     "expected INT64 integers"),
    # the fixed width of the numeric vector
    ("fixed dim", lambda f: {**f, "numeric": np.ones((3, 4), np.float32)}, "numeric",
     "dimension 1 must be 3"),
    # one scalar per row, not a column
    ("rank", lambda f: {**f, "country": f["country"].reshape(3, 1)}, "country", "expected rank 1"),
]


@pytest.mark.parametrize(("case", "mutate", "tensor", "fragment"), _BAD, ids=[c[0] for c in _BAD])
def test_bad_inputs_raise_wire_error(
    ranking: TensorFlowRuntime, case: str, mutate, tensor: str, fragment: str  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(WireError) as info:
        ranking.predict(mutate(ranking_inputs(3)))
    assert info.value.tensor == tensor and fragment in str(info.value)


def test_model_level_rejection_is_a_wire_error(ranking: TensorFlowRuntime) -> None:
    feed = ranking_inputs(3)
    feed["item_id"] = feed["item_id"][:2]  # rows disagree; only the model's concat notices
    for call in (ranking.predict, ranking.predict_timed):
        with pytest.raises(WireError, match="rejected by the model") as info:
            call(feed)
        assert "\n" not in str(info.value)


# --- profiling ---------------------------------------------------------------------------

def test_profiling_writes_an_xplane_trace(ranking: TensorFlowRuntime, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not running"):
        ranking.stop_profiling()
    out = tmp_path / "tfprof"
    ranking.start_profiling(out)
    with pytest.raises(UsageError, match="already running"):
        ranking.start_profiling(out)
    ranking.predict(ranking_inputs(25))
    run_dir = ranking.stop_profiling()
    assert run_dir.parent == (out / "plugins" / "profile").resolve()
    traces = list(run_dir.glob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


# --- errors and options ------------------------------------------------------------------

def test_unknown_signature_lists_the_available_ones(tf_ranking_base: Path) -> None:
    with pytest.raises(DataError, match=r"no signature 'predict' \(it has: model, serving_default, "
                                        r"transform\)"):
        open_runtime(tf_ranking_base, signature_name="predict")


def test_corrupt_saved_model_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x12\x34 not a SavedModel \xff")
    for load in (open_runtime, read_signature):
        with pytest.raises(DataError, match="cannot load the SavedModel") as info:
            load(tmp_path)
        assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_graph_optimization_is_onnx_only(tf_echo_path: Path) -> None:
    with pytest.raises(UsageError, match="applies to ONNX models only"):
        open_runtime(tf_echo_path, graph_optimization="basic")


def test_threads_cannot_change_once_tensorflow_runs(
    ranking: TensorFlowRuntime, tf_echo_path: Path
) -> None:
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(UsageError, match="TensorFlow already started in this process"):
        open_runtime(tf_echo_path, intra_op_threads=current + 3)


def test_missing_tensorflow_names_the_extra(
    tf_echo_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(MissingExtraError, match=r"modelcaliper\[tensorflow\]"):
        open_runtime(tf_echo_path)


@pytest.mark.slow
def test_thread_settings_apply_in_a_fresh_process(tf_echo_path: Path) -> None:
    script = textwrap.dedent(f"""
        import tensorflow as tf
        from modelcaliper.server.runtimes import open_runtime
        runtime = open_runtime({str(tf_echo_path)!r}, intra_op_threads=1, inter_op_threads=2)
        runtime.predict({{"text": [b"a"], "value": 1.0}})
        print(tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "2"]

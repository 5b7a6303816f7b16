"""The ONNX Runtime runtime, input validation and artifact resolution (no TensorFlow here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcaliper.errors import DataError, MissingExtraError, UsageError, WireError
from modelcaliper.server.runtimes import (
    Runtime,
    TimedRuntime,
    open_runtime,
    predict_timed,
    read_signature,
    resolve_artifact,
    validate_inputs,
)
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType
from tests.models import build_onnx_mlp, mlp_inputs, multi_io_inputs


def _direct(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of a plain onnxruntime session with default options; strings fed as str."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    text_feed = {
        k: (np.array([v.decode() for v in a.reshape(-1)], dtype=object).reshape(a.shape)
            if a.dtype == object else a)
        for k, a in feed.items()
    }
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, text_feed), strict=True))


# --- signatures --------------------------------------------------------------------------

def test_mlp_signature_from_runtime_and_from_file(onnx_mlp_path: Path) -> None:
    runtime = open_runtime(onnx_mlp_path)
    expected = Signature(
        inputs=(TensorSpec("features", DType.FP32, (-1, 300)),),
        outputs=(TensorSpec("score", DType.FP32, (-1, 1)),),
    )
    assert runtime.signature == expected
    assert read_signature(onnx_mlp_path) == expected
    assert (runtime.platform, runtime.version) == ("onnxruntime_onnx", "1")
    assert isinstance(runtime, Runtime)
    assert not isinstance(runtime, TimedRuntime)  # nothing to split in an ONNX graph


def test_multi_io_signature(onnx_multi_io_path: Path) -> None:
    sig = read_signature(onnx_multi_io_path)
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [
        ("dense", DType.FP32, (-1, 4)),
        ("count", DType.INT64, (-1,)),
        ("token", DType.BYTES, (-1,)),
        ("flag", DType.BOOL, (-1,)),
    ]
    assert [(s.name, s.dtype, s.shape) for s in sig.outputs] == [
        ("score", DType.FP32, (-1, 1)),
        ("token_echo", DType.BYTES, (-1,)),
        ("count_next", DType.INT64, (-1,)),
        ("flag_not", DType.BOOL, (-1,)),
    ]
    assert open_runtime(onnx_multi_io_path).signature == sig


# --- predictions -------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [1, 25, 300])
def test_mlp_predict_is_bit_exact_with_a_direct_session(onnx_mlp_path: Path, rows: int) -> None:
    runtime = open_runtime(onnx_mlp_path)
    feed = mlp_inputs(rows, seed=rows)
    got = runtime.predict(feed)
    want = _direct(onnx_mlp_path, feed)
    assert got["score"].dtype == np.float32 and got["score"].shape == (rows, 1)
    np.testing.assert_array_equal(got["score"], want["score"])


def test_multi_io_predict_matches_direct_session_and_returns_bytes(
    onnx_multi_io_path: Path,
) -> None:
    runtime = open_runtime(onnx_multi_io_path)
    feed = multi_io_inputs(40, seed=3)
    got = runtime.predict(feed)
    want = _direct(onnx_multi_io_path, feed)
    np.testing.assert_array_equal(got["score"], want["score"])
    np.testing.assert_array_equal(got["count_next"], feed["count"] + 1)
    np.testing.assert_array_equal(got["flag_not"], ~feed["flag"])
    assert got["token_echo"].dtype == object
    assert list(got["token_echo"]) == list(feed["token"])  # UTF-8 bytes survive the round trip
    assert all(type(v) is bytes for v in got["token_echo"])


def test_predict_applies_safe_numeric_casts(onnx_multi_io_path: Path) -> None:
    runtime = open_runtime(onnx_multi_io_path)
    feed = multi_io_inputs(5, seed=1)
    base = runtime.predict(feed)
    widened = dict(
        feed, dense=feed["dense"].astype(np.float64), count=feed["count"].astype(np.int32)
    )
    again = runtime.predict(widened)
    np.testing.assert_array_equal(again["score"], base["score"])
    assert again["count_next"].dtype == np.int64
    ints = dict(feed, dense=np.arange(20, dtype=np.int64).reshape(5, 4))
    np.testing.assert_array_equal(
        runtime.predict(ints)["score"][:, 0],
        np.arange(20, dtype=np.float32).reshape(5, 4) @ [1, 2, 3, 4] + feed["count"],
    )


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_graph_optimization_levels_agree(onnx_mlp_path: Path, level: str) -> None:
    feed = mlp_inputs(8)
    reference = _direct(onnx_mlp_path, feed)["score"]
    runtime = open_runtime(onnx_mlp_path, graph_optimization=level,
                           intra_op_threads=1, inter_op_threads=2)
    # Fused and unfused kernels may round differently in the last bits.
    np.testing.assert_allclose(runtime.predict(feed)["score"], reference, rtol=1e-6, atol=1e-7)


def test_predict_timed_falls_back_to_compute(onnx_mlp_path: Path) -> None:
    runtime = open_runtime(onnx_mlp_path)
    outputs, phases = predict_timed(runtime, mlp_inputs(4))
    assert set(phases) == {"compute"} and phases["compute"] > 0
    assert outputs["score"].shape == (4, 1)


# --- validation --------------------------------------------------------------------------

_BAD_INPUTS = [
    # a required input left out
    ("missing", lambda f: {k: v for k, v in f.items() if k != "count"}, "count", "missing input"),
    # a name the model does not take
    ("unknown", lambda f: {**f, "extra": np.zeros(3, np.float32)}, "extra", "unknown input"),
    # strings where the model wants numbers
    ("bytes for FP32", lambda f: {**f, "dense": np.full((3, 4), b"1", dtype=object)}, "dense",
     "expected FP32 numbers, got BYTES"),
    # numbers where the model wants strings
    ("INT64 for BYTES", lambda f: {**f, "token": np.arange(3)}, "token", "expected BYTES"),
    # floats are never truncated into an integer input
    ("FP64 for INT64", lambda f: {**f, "count": np.ones(3)}, "count", "expected INT64 integers"),
    # numbers are not booleans
    ("INT64 for BOOL", lambda f: {**f, "flag": np.ones(3, np.int64)}, "flag", "expected BOOL"),
    # one dimension too many
    ("rank", lambda f: {**f, "count": np.ones((3, 1), np.int64)}, "count", "expected rank 1"),
    # a fixed dimension of the wrong size
    ("fixed dim", lambda f: {**f, "dense": np.ones((3, 5), np.float32)}, "dense",
     "dimension 1 must be 4"),
    # bytes that are not text cannot become an ONNX Runtime string
    ("not UTF-8", lambda f: {**f, "token": np.array([b"a", b"\xff", b"c"], dtype=object)}, "token",
     "element 1 is not UTF-8"),
]


@pytest.mark.parametrize(("case", "mutate", "tensor", "fragment"), _BAD_INPUTS,
                         ids=[c[0] for c in _BAD_INPUTS])
def test_bad_inputs_raise_wire_error_naming_the_tensor(
    onnx_multi_io_path: Path, case: str, mutate, tensor: str, fragment: str  # type: ignore[no-untyped-def]
) -> None:
    runtime = open_runtime(onnx_multi_io_path)
    with pytest.raises(WireError) as info:
        runtime.predict(mutate(multi_io_inputs(3)))
    assert info.value.tensor == tensor
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_model_level_rejection_is_a_wire_error(onnx_multi_io_path: Path) -> None:
    runtime = open_runtime(onnx_multi_io_path)
    feed = multi_io_inputs(3)
    feed["count"] = feed["count"][:2]  # every dimension is dynamic, but the graph needs equal rows
    with pytest.raises(WireError, match="rejected by the model"):
        runtime.predict(feed)


_SIG = Signature(inputs=(
    TensorSpec("i32", DType.INT32, (-1,)),
    TensorSpec("u8", DType.UINT8, (-1,)),
    TensorSpec("any", DType.FP32, (-1,), {"any_rank": True}),
    TensorSpec("scalar", DType.FP64, ()),
))


def _sig_feed(**over: object) -> dict[str, object]:
    feed: dict[str, object] = {"i32": np.array([1], np.int32), "u8": np.array([1], np.uint8),
                               "any": np.zeros((2, 3, 4), np.float32), "scalar": np.float64(1.0)}
    feed.update(over)
    return feed


@pytest.mark.parametrize(("over", "tensor", "fragment"), [
    # int64 values beyond INT32
    ({"i32": np.array([2**31], np.int64)}, "i32", "outside the INT32 range"),
    # negative values for an unsigned input
    ({"u8": np.array([-1], np.int64)}, "u8", "outside the UINT8 range"),
    # a scalar input given as a vector
    ({"scalar": np.ones(1)}, "scalar", "expected rank 0"),
    # complex numbers have no wire dtype at all
    ({"any": np.ones(2, np.complex64)}, "any", "no wire equivalent"),
])
def test_validate_inputs_rejects(over: dict[str, object], tensor: str, fragment: str) -> None:
    with pytest.raises(WireError) as info:
        validate_inputs(_SIG, _sig_feed(**over))
    assert info.value.tensor == tensor and fragment in str(info.value)


def test_validate_inputs_accepts_any_rank_scalars_lists_and_big_endian() -> None:
    out = validate_inputs(_SIG, _sig_feed(any=np.float32(3), i32=[4, 5],
                                          scalar=np.array(2.5, ">f8")))
    assert out["any"].shape == () and out["i32"].dtype == np.int32
    assert out["scalar"].dtype == np.dtype("<f8") and out["scalar"] == 2.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20))
def test_int64_into_int32_is_accepted_exactly_when_every_value_fits(values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    fits = all(-(2**31) <= v < 2**31 for v in values)
    if fits:
        out = validate_inputs(_SIG, _sig_feed(i32=array))["i32"]
        assert out.dtype == np.int32 and out.tolist() == values
    else:
        with pytest.raises(WireError, match="outside the INT32 range"):
            validate_inputs(_SIG, _sig_feed(i32=array))


# --- profiling ---------------------------------------------------------------------------

def test_profiling_writes_a_json_trace_of_the_profiled_predictions(
    onnx_mlp_path: Path, tmp_path: Path
) -> None:
    runtime = open_runtime(onnx_mlp_path)
    with pytest.raises(UsageError, match="not running"):
        runtime.stop_profiling()
    runtime.start_profiling(tmp_path / "prof")
    with pytest.raises(UsageError, match="already running"):
        runtime.start_profiling(tmp_path / "prof")
    feed = mlp_inputs(25)
    profiled = runtime.predict(feed)
    runtime.predict(feed)
    trace = runtime.stop_profiling()
    assert trace.is_file() and trace.parent == (tmp_path / "prof").resolve()
    assert trace.suffix == ".json"
    events = json.loads(trace.read_text())
    node_runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # three dense layers per prediction, two predictions (ORT fuses Gemm with its activation)
    ops = [e["args"]["op_name"] for e in node_runs]
    assert sum("Gemm" in op for op in ops) == 2 * 3
    assert set(ops) <= {"Gemm", "FusedGemm", "Relu", "Sigmoid"}
    # after stopping, predictions go back to the plain session and give the same answer
    np.testing.assert_array_equal(runtime.predict(feed)["score"], profiled["score"])
    assert sorted(p.name for p in (tmp_path / "prof").iterdir()) == [trace.name]


# --- artifacts and errors ----------------------------------------------------------------

def test_corrupt_onnx_file_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff\xff")
    for load in (open_runtime, read_signature):
        with pytest.raises(DataError, match="broken.onnx") as info:
            load(bad)
        assert "\n" not in str(info.value)


def test_truncated_onnx_file_is_a_data_error(onnx_mlp_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_mlp_path.read_bytes()[:5000])
    with pytest.raises(DataError, match="cut.onnx"):
        open_runtime(cut)


@pytest.mark.parametrize(("layout", "fragment"), [
    # an empty directory
    ({}, "holds no model"),
    # files that are no model
    ({"notes.txt": b"x"}, "holds no model"),
    # a numbered directory without a model inside is not a version
    ({"1/readme": b"x"}, "holds no model"),
])
def test_directories_without_a_model_are_data_errors(
    tmp_path: Path, layout: dict[str, bytes], fragment: str
) -> None:
    for rel, data in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    with pytest.raises(DataError, match=fragment):
        open_runtime(tmp_path)


def test_missing_path_and_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        resolve_artifact(tmp_path / "nope.onnx")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="not a model file"):
        open_runtime(other)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.mark.parametrize(("files", "version", "expected"), [
    # a SavedModel directory itself; the version is only a label
    (["saved_model.pb"], None, ("tensorflow", ".", "1")),
    (["saved_model.pb"], 7, ("tensorflow", ".", "7")),
    # a directory holding model.onnx
    (["model.onnx"], None, ("onnx", "model.onnx", "1")),
    # TF Serving base path: the highest number wins, numerically (10 > 9)
    (["9/saved_model.pb", "10/saved_model.pb", "tmp/saved_model.pb"], None,
     ("tensorflow", "10", "10")),
    # an explicit version, as int or str
    (["1/saved_model.pb", "2/saved_model.pb"], 1, ("tensorflow", "1", "1")),
    (["1/saved_model.pb", "2/saved_model.pb"], "1", ("tensorflow", "1", "1")),
    # Triton's layout; an incomplete newer version directory is skipped
    (["1/model.onnx", "3/model.onnx", "4/partial"], None, ("onnx", "3/model.onnx", "3")),
])
def test_resolve_artifact(
    tmp_path: Path, files: list[str], version: object, expected: tuple[str, str, str]
) -> None:
    for rel in files:
        _touch(tmp_path / rel)
    kind, path, label = resolve_artifact(tmp_path, version)  # type: ignore[arg-type]
    assert (kind, path, label) == (expected[0], tmp_path / expected[1], expected[2])


def test_the_saved_model_file_itself_points_at_its_directory(tmp_path: Path) -> None:
    _touch(tmp_path / "7" / "saved_model.pb")
    found = resolve_artifact(tmp_path / "7" / "saved_model.pb")
    assert found == ("tensorflow", tmp_path / "7", "1")


@pytest.mark.parametrize("version", [3, "latest"])
def test_unknown_version_is_a_data_error(tmp_path: Path, version: object) -> None:
    for rel in ("1/saved_model.pb", "2/saved_model.pb"):
        _touch(tmp_path / rel)
    expected = r"no servable version .* \(versions holding a model: 1, 2\)"
    with pytest.raises(DataError, match=expected):
        resolve_artifact(tmp_path, version)  # type: ignore[arg-type]


def test_onnx_model_base_path_serves_the_highest_version(tmp_path: Path) -> None:
    build_onnx_mlp(tmp_path / "1" / "model.onnx", n_inputs=4, hidden=(3,), seed=1)
    build_onnx_mlp(tmp_path / "2" / "model.onnx", n_inputs=4, hidden=(3,), seed=2)
    feed = mlp_inputs(2, n_inputs=4)
    latest, first = open_runtime(tmp_path), open_runtime(tmp_path, version=1)
    assert (latest.version, first.version) == ("2", "1")
    assert not np.array_equal(latest.predict(feed)["score"], first.predict(feed)["score"])


@pytest.mark.parametrize(("kwargs", "fragment"), [
    # an unknown optimisation level
    ({"graph_optimization": "max"}, "graph_optimization must be one of"),
    # zero threads is not "default"; leave it unset for that
    ({"intra_op_threads": 0}, "intra_op_threads must be an integer"),
    ({"inter_op_threads": -2}, "inter_op_threads must be an integer"),
    # ONNX has no named signatures
    ({"signature_name": "predict"}, "single signature"),
])
def test_bad_options_are_usage_errors(
    onnx_mlp_path: Path, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(UsageError, match=fragment):
        open_runtime(onnx_mlp_path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("module", "call"), [
    ("onnxruntime", open_runtime),
    ("onnx", read_signature),
])
def test_missing_package_names_the_extra(
    onnx_mlp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, call  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingExtraError, match=r"modelcaliper\[onnx\]") as info:
        call(onnx_mlp_path)
    assert info.value.extra == "onnx"

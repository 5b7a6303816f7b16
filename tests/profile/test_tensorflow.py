"""TensorFlow profiles: a known slow ``tf.map_fn`` must come out on top, in the right group."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from modelcaliper.errors import DataError
from modelcaliper.profile.base import ProfileResult
from modelcaliper.profile.grouping import Grouper, parse_group_flags
from modelcaliper.profile.isolated import IsolatedSettings, profile_isolated
from modelcaliper.profile.tensorflow import (
    LOOP_TYPE,
    convert_tf_profile,
    find_xplanes,
    savedmodel_loops,
)
from tests.models import ranking_inputs
from tests.profile.builders import map_fn_inputs

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

WARM = IsolatedSettings(batch_sizes=(16,), predictions=10, warmup=120)

MAP_FN_CASES = [
    # (model, --group flags, expected group of the loop and of the whole profile)
    # the loop sits under a "transform" name scope
    ("transform-numeric", [], "transform"),
    # the loop's body formats and cleans strings: a transform by what it does
    ("features-strings", [], "transform"),
    # a numeric loop under a neutral scope is model work by default ...
    ("features-numeric", [], "model"),
    # ... unless the user says that scope is their transform
    ("features-numeric", ["transform=features"], "transform"),
]


@pytest.mark.parametrize(("model", "flags", "group"), MAP_FN_CASES)
def test_slow_map_fn_comes_out_on_top(map_fn_models: dict[str, Path], tmp_path: Path,
                                      model: str, flags: list[str], group: str) -> None:
    grouper = Grouper(parse_group_flags(flags))
    (result,) = profile_isolated(map_fn_models[model], map_fn_inputs(64), tmp_path, WARM,
                                 grouper)
    top = result.ops[0]
    scope = model.split("-")[0]
    # After warm-up TensorFlow no longer times the loop body's cheap ops one by one: the
    # loop's iterations are one row named after the loop.
    assert top.name == f"StatefulPartitionedCall/{scope}/map/while", _table(result)
    assert top.op_type == LOOP_TYPE and not top.traced
    assert top.group == group
    assert top.share > 0.5, _table(result)
    assert result.summary().top_group == group


def _table(result: ProfileResult) -> list[tuple[str, str, float]]:
    return [(op.name, op.group, round(op.share, 3)) for op in result.ops]


@pytest.fixture(scope="module")
def cold_capture(map_fn_models: dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> ProfileResult:
    """A profile of the numeric transform loop without warm-up: every op is still timed."""
    settings = IsolatedSettings(batch_sizes=(8,), predictions=3, warmup=0)
    (result,) = profile_isolated(map_fn_models["transform-numeric"], map_fn_inputs(8),
                                 tmp_path_factory.mktemp("cold"), settings)
    return result


def test_cold_profile_names_the_loop_body_ops(cold_capture: ProfileResult) -> None:
    body = [op for op in cold_capture.ops if "/while/body/" in op.name and op.traced]
    # (Grappler fuses the unary log1p/abs chain into one op; the arithmetic stays apart)
    assert {op.op_type for op in body} >= {"Mul", "AddV2"}
    assert all(op.group == "transform" for op in body)
    assert all(op.function == "serve" for op in cold_capture.ops if op.traced)


def test_chrome_trace_is_written(cold_capture: ProfileResult) -> None:
    trace = orjson.loads(Path(cold_capture.trace_path or "").read_bytes())
    events = trace["traceEvents"]
    names = {e["name"] for e in events if e["ph"] == "X"}
    assert "ExecutorState::Process" in names
    assert any("/while/body/" in name and name.endswith(":Mul") for name in names)
    assert any(e["ph"] == "M" and e["args"]["name"].startswith("/host:CPU") for e in events)
    assert all(e["dur"] >= 0 for e in events if e["ph"] == "X")


def test_reconversion_without_the_model_names_loops_generically(
        cold_capture: ProfileResult, map_fn_models: dict[str, Path], tmp_path: Path) -> None:
    # A remote capture has no SavedModel at hand: loop time keeps its function's name.
    raw = Path(cold_capture.raw_path or "")
    again = convert_tf_profile(raw, trace_path=tmp_path / "trace.json")
    loops = [op for op in again.ops if op.op_type == LOOP_TYPE]
    assert all(op.name == "serve/(untraced loop iterations)" for op in loops)
    assert again.total_us == pytest.approx(cold_capture.total_us)


def test_savedmodel_loops(map_fn_models: dict[str, Path]) -> None:
    loops = savedmodel_loops(map_fn_models["features-strings"])
    (loop,) = loops["serve"]
    assert loop.name == "StatefulPartitionedCall/features/map/while"
    assert {"StringLower", "StringStrip", "AsString"} <= set(loop.body_types)


def test_split_signatures_group_ops_by_function(ranking_model: Path, tmp_path: Path) -> None:
    settings = IsolatedSettings(batch_sizes=(8,), predictions=10, warmup=20)
    (result,) = profile_isolated(ranking_model, ranking_inputs(32), tmp_path, settings)
    functions = {op.function for op in result.ops}
    assert {"transform", "model"} <= functions
    for op in result.ops:
        if op.function in ("transform", "model"):
            assert op.group == op.function, op
    untraced = {op.name for op in result.ops if not op.traced}
    assert "transform/(untraced ops and executor)" in untraced


def test_empty_capture_window_is_a_clear_error(tmp_path: Path) -> None:
    tf.profiler.experimental.start(str(tmp_path))
    tf.profiler.experimental.stop()
    with pytest.raises(DataError, match="no prediction ran while profiling") as info:
        convert_tf_profile(tmp_path)
    assert "\n" not in str(info.value)


def test_corrupt_profile_is_a_clear_error(tmp_path: Path) -> None:
    run = tmp_path / "plugins" / "profile" / "2026_01_01_00_00_00"
    run.mkdir(parents=True)
    (run / "host.xplane.pb").write_bytes(b"\x99 not a protobuf at all " * 8)
    with pytest.raises(DataError, match="corrupt") as info:
        convert_tf_profile(tmp_path)
    assert "\n" not in str(info.value)


def test_no_capture_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no TensorFlow profile"):
        find_xplanes(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        find_xplanes(tmp_path / "absent")

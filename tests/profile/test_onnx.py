"""ONNX Runtime profiles: conversion of the JSON, and a real MLP whose big MatMul must lead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.errors import DataError
from modelcaliper.profile.grouping import Grouper, parse_group_flags
from modelcaliper.profile.isolated import IsolatedSettings, profile_isolated
from modelcaliper.profile.onnx import convert_onnx_profile, format_shapes
from tests.profile.builders import DOMINANT_NODE, dominant_matmul_inputs


def _node(name: str, op: str, ts: float, dur: float, tid: int = 1, **args: Any) -> dict[str, Any]:
    return {"cat": "Node", "pid": 1, "tid": tid, "ph": "X", "name": f"{name}_kernel_time",
            "ts": ts, "dur": dur, "args": {"op_name": op, **args}}


def _run(ts: float, dur: float) -> dict[str, Any]:
    return {"cat": "Session", "pid": 1, "tid": 1, "ph": "X", "name": "model_run", "ts": ts,
            "dur": dur, "args": {}}


LOADING = {"cat": "Session", "pid": 1, "tid": 1, "ph": "X", "name": "session_initialization",
           "ts": 0, "dur": 500, "args": {}}


def _write(tmp_path: Path, events: Any) -> Path:
    path = tmp_path / "onnxruntime_profile.json"
    path.write_bytes(orjson.dumps(events))
    return path


def test_convert_rows_shapes_and_wall(tmp_path: Path) -> None:
    events = [
        LOADING,
        _run(1000, 100), _node("gemm", "Gemm", 1010, 60, input_type_shape=[{"float": [5, 8]}]),
        _node("relu", "Relu", 1075, 10),
        _run(2000, 120), _node("gemm", "Gemm", 2010, 80, input_type_shape=[{"float": [25, 8]}]),
        _node("relu", "Relu", 2095, 12),
    ]
    result = convert_onnx_profile(_write(tmp_path, events), label="x")
    gemm, relu = result.ops
    assert (gemm.name, gemm.op_type, gemm.calls, gemm.self_us) == ("gemm", "Gemm", 2, 140.0)
    assert gemm.input_shapes == ("float[5,8]", "float[25,8]")
    assert gemm.share == pytest.approx(140 / 162)
    assert (relu.calls, relu.total_us, relu.mean_us) == (2, 22.0, 11.0)
    assert result.wall_us == 220.0 and result.predictions == 2
    assert result.trace_path == result.raw_path == str(tmp_path / "onnxruntime_profile.json")


def test_subgraph_nodes_nest_in_their_control_flow_node(tmp_path: Path) -> None:
    events = [_run(0, 100), _node("loop", "Loop", 0, 90), _node("body/add", "Add", 10, 30),
              _node("body/mul", "Mul", 50, 30)]
    result = convert_onnx_profile(_write(tmp_path, events))
    assert {op.name: op.self_us for op in result.ops} == {"loop": 30.0, "body/add": 30.0,
                                                          "body/mul": 30.0}
    assert result.op("body/add").scope == "body"  # type: ignore[union-attr]


def test_skip_runs_drops_settling_predictions(tmp_path: Path) -> None:
    events = [_run(0, 900), _node("gemm", "Gemm", 10, 800),  # a slow first run
              _run(1000, 100), _node("gemm", "Gemm", 1010, 60)]
    result = convert_onnx_profile(_write(tmp_path, events), skip_runs=1)
    assert result.op("gemm").calls == 1 and result.op("gemm").self_us == 60.0  # type: ignore[union-attr]
    assert result.wall_us == 100.0 and result.predictions == 1


def test_unnamed_nodes_get_type_and_index(tmp_path: Path) -> None:
    events = [_run(0, 50), _node("", "MatMul", 1, 10, node_index="3"),
              _node("fused ", "FusedGemm", 20, 10, node_index="6")]
    names = {op.name for op in convert_onnx_profile(_write(tmp_path, events)).ops}
    assert names == {"MatMul#3", "FusedGemm#6"}


def test_user_rules_group_onnx_nodes(tmp_path: Path) -> None:
    events = [_run(0, 50), _node("features/scale", "Mul", 1, 10), _node("head", "Gemm", 20, 20)]
    grouper = Grouper(parse_group_flags(["transform=features"]))
    result = convert_onnx_profile(_write(tmp_path, events), grouper=grouper)
    assert {op.name: op.group for op in result.ops} == {"features/scale": "transform",
                                                        "head": "model"}


BAD_PROFILES = [
    # a file cut short mid-write
    (b'[{"cat": "Node", "name": "a_kernel_time", "ts": 1', "not valid JSON"),
    # JSON, but not a list of events
    (b'{"hello": 1}', "not a list of trace events"),
    # only the session's loading events: nothing ran in the window
    (orjson.dumps([LOADING]), "no prediction ran while profiling"),
    # an event whose time is not a number
    (orjson.dumps([_node("a", "Add", "soon", 3)]), "non-numeric time"),
]


@pytest.mark.parametrize(("content", "message"), BAD_PROFILES)
def test_bad_profiles_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        convert_onnx_profile(path)
    assert "\n" not in str(info.value)


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        convert_onnx_profile(tmp_path / "nope.json")


SHAPES = [
    # two inputs of two dtypes
    ([{"float": [25, 300]}, {"int64": [25]}], "float[25,300] int64[25]"),
    # a scalar input
    ([{"float": []}], "float[]"),
    # something ONNX Runtime never writes
    ("junk", ""),
]


@pytest.mark.parametrize(("value", "text"), SHAPES)
def test_format_shapes(value: Any, text: str) -> None:
    assert format_shapes(value) == text


@pytest.mark.parametrize("graph", ["optimized", "original"])
def test_dominant_matmul_leads(dominant_onnx: Path, tmp_path: Path, graph: str) -> None:
    pytest.importorskip("onnxruntime")
    settings = IsolatedSettings(batch_sizes=(16,), predictions=40, warmup=5, graph=graph)
    (result,) = profile_isolated(dominant_onnx, dominant_matmul_inputs(64), tmp_path, settings)
    top = result.ops[0]
    # Optimized, ONNX Runtime may fuse the MatMul with its Relu and rename it "fused ...".
    assert DOMINANT_NODE in top.name if graph == "optimized" else top.name == DOMINANT_NODE
    assert top.share > 0.5, [(op.name, op.share) for op in result.ops]
    assert top.calls == 40 and top.input_shapes[0].startswith("float[16,512]")
    assert result.summary().top_group == "model"
    assert (tmp_path / "batch_16" / "profile.json").is_file()
    assert Path(result.trace_path or "").is_file()
    if graph == "original":  # every node of the file, under its own name
        assert {op.name for op in result.ops} == {
            DOMINANT_NODE, "wide_relu", "narrow_matmul", "narrow_relu", "head_matmul",
            "head_sigmoid"}

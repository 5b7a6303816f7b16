"""``caliper run --check-outputs / --expect-model``: wrong answers count as model errors."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from modelcaliper.cli.main import main
from tests.run.helpers import only_folder, read_json

pytestmark = pytest.mark.slow


def build_log_model(path: Path) -> Path:
    """``y = log(x)``: NaN for every negative input, which synthetic rows are full of."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])], "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def run(model: Path, runs: Path, *flags: str) -> int:
    return main(["run", str(model), "--rps", "40", "--duration", "2s", "--warmup", "0",
                 "--batch-size", "8", "--runs-dir", str(runs), "--quiet", *flags])


def test_nan_answers_are_model_errors_with_examples(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    model = build_log_model(tmp_path / "log.onnx")
    code = run(model, tmp_path / "runs", "--check-outputs")
    capsys.readouterr()
    assert code == 1  # every answer was wrong: the run failed, and says how
    summary = read_json(only_folder(tmp_path / "runs") / "summary.json")
    assert summary["requests"]["model_errors"] == 80
    assert summary["requests"]["ok"] == 0
    assert summary["errors_by_kind"]["model_nan"] == 80
    checks = summary["model_checks"]
    assert checks["counts"]["model_nan"] == 80
    assert checks["examples"]["model_nan"][0]["output"] == "y"


def test_expected_model_answers_pass_bit_for_bit(model: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = run(model, tmp_path / "runs", "--expect-model", "--rtol", "0", "--atol", "0")
    capsys.readouterr()
    assert code == 0
    summary = read_json(only_folder(tmp_path / "runs") / "summary.json")
    assert summary["requests"]["ok"] == 80 and summary["requests"]["model_errors"] == 0
    assert summary["model_checks"]["checked"] == 80


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--expect-model", "--workers", "2"], "one generator process"),
        (["--rtol", "-1", "--expect-model"], "--rtol must be a number"),
    ],
)
def test_bad_check_flags_are_usage_errors(model: Path, tmp_path: Path, flags: list[str],
                                          fragment: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(model, tmp_path / "runs", *flags) == 2
    assert fragment in capsys.readouterr().err


def test_expect_model_needs_the_artifact(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--target", "http://127.0.0.1:1", "--protocol", "v2-rest", "--model",
                 "m", "--expect-model"])
    assert code == 2
    assert "give the model path" in capsys.readouterr().err

"""``caliper profile``: tables and JSON out, files written, one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.main import main
from tests.profile.builders import DOMINANT_NODE, dominant_matmul_inputs

QUICK = ["--predictions", "10", "--warmup", "2", "--sample", "40"]


def test_profile_onnx_with_data_json_to_stdout(dominant_onnx: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.parquet"
    features = dominant_matmul_inputs(50)["features"]
    pq.write_table(pa.table({"features": list(features)}), data)
    out = tmp_path / "out"
    # More warm-up and predictions than QUICK, so that one-off costs of the first calls at a
    # new batch size cannot outweigh the node that does the arithmetic.
    code = main(["profile", str(dominant_onnx), "--data", str(data), "--batch-size", "2,8",
                 "--out", str(out), "--json", "-", "--graph", "original", "--predictions", "20",
                 "--warmup", "10", "--sample", "40"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = orjson.loads(captured.out)
    assert [p["batch_size"] for p in document["profiles"]] == [2, 8]
    assert all(p["ops"][0]["name"] == DOMINANT_NODE for p in document["profiles"])
    assert "scaling with batch size" in captured.err  # tables go to stderr with --json -
    assert f"40 rows of {data}" in captured.err
    for size in (2, 8):
        assert (out / f"batch_{size}" / "profile.json").is_file()


@pytest.mark.slow
def test_profile_tf_synthetic_rows_and_group_flag(map_fn_models: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["profile", str(map_fn_models["features-numeric"]), "--batch-size", "4",
                 "--group", "transform=features", "--out", str(out),
                 "--json", str(tmp_path / "p.json"), "--top", "3", *QUICK])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "synthetic rows" in captured.err
    assert "top 3 ops by self time" in captured.out
    profile = orjson.loads((tmp_path / "p.json").read_bytes())["profiles"][0]
    assert profile["rules"] == ["transform=features"]
    assert profile["summary"]["top_group"] == "transform"
    assert len(profile["summary"]["top"]) == 3
    assert (out / "batch_4" / "trace.json").is_file()


ERRORS = [
    # (arguments after the model, words of the one-line error)
    # a batch size of 0
    (["--batch-size", "0"], "--batch-size must be ≥ 1"),
    # a --group without '='
    (["--group", "transform"], "--group must look like"),
    # no predictions to profile
    (["--predictions", "0"], "--predictions must be ≥ 1"),
    # a dataset that is not there
    (["--data", "/nonexistent/rows.parquet"], "rows.parquet"),
]


@pytest.mark.parametrize(("args", "words"), ERRORS)
def test_usage_errors_exit_2(dominant_onnx: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str], args: list[str],
                             words: str) -> None:
    code = main(["profile", str(dominant_onnx), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(tmp_path / "nope.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err

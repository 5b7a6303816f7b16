"""``caliper run --profile``: an op profile captured under load, stored with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcaliper.cli.main import main
from modelcaliper.profile.base import ProfileResult, read_profile
from tests.run.helpers import only_folder, read_json

pytestmark = pytest.mark.slow


def test_embedded_run_captures_and_stores_an_op_profile(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code = main(["run", str(model), "--rps", "100", "--duration", "4s", "--warmup", "500ms",
                 "--runs-dir", str(runs), "--profile", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = only_folder(runs)
    summary = read_json(folder / "summary.json")
    profile = summary["profile"]
    assert profile["status"] == "ok" and profile["runtime"].startswith("onnx")
    assert profile["top_group"] == "model"  # an MLP has no feature transforms
    assert profile["top_ops"] and profile["top_ops"][0]["share"] > 0
    stored = read_profile(folder / "profile" / "profile.json")
    assert isinstance(stored, ProfileResult) and stored.ops
    assert "op profile" in out and "phases s" in out


def test_a_target_without_a_profiler_still_completes_and_says_why(
        served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code = main(["run", "--target", served.http_url, "--protocol", "v2-rest", "--model", "mlp",
                 "--rps", "40", "--duration", "2s", "--warmup", "0", "--runs-dir", str(runs),
                 "--profiler-address", "127.0.0.1:1", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = read_json(only_folder(runs) / "summary.json")
    assert summary["requests"]["ok"] == 80  # the load test itself is whole
    assert summary["profile"]["status"] == "missing" and summary["profile"]["reason"]
    assert "op profile  missing:" in out

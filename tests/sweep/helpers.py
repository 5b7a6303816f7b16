"""Helpers of the sweep tests: run ``caliper sweep`` in-process and read what it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.cli.main import main


def sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str],
          *argv: str) -> tuple[int, str, str, dict[str, Any] | None]:
    """``caliper sweep ARGV --runs-dir tmp/runs``: exit code, stdout, stderr, sweep.json."""
    code = main(["sweep", *argv, "--runs-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    documents = sorted((tmp_path / "runs" / "sweeps").glob("*/sweep.json"))
    document = orjson.loads(documents[-1].read_bytes()) if documents else None
    return code, out, err, document


def figures(document: dict[str, Any], **config: Any) -> list[dict[str, Any]]:
    """The figures of every point whose config matches ``config``."""
    return [p["figures"] for p in document["points"]
            if all(p["config"].get(k) == v for k, v in config.items())]

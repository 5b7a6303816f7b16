"""``modelcaliper.run(...)``: the same run as the command, returning the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import modelcaliper
from modelcaliper.errors import UsageError
from modelcaliper.store import Store

pytestmark = pytest.mark.slow


def test_run_returns_the_summary_and_stores_the_run(served: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    summary = modelcaliper.run(target=served.http_url, protocol="tfserving-rest",
                               model_name="mlp", rps=30, duration="1s", warmup=0,
                               batch_size=2, encoding="columnar", assertions=["p99<10s"],
                               tags=["api"], runs_dir=runs)
    assert summary["status"] == "completed" and summary["verdict"] == "pass"
    assert summary["requests"]["ok"] == 30 and summary["load"]["batch_size"] == 2
    assert summary["pool"]["encoding"] == "tfserving-rest columnar"
    assert Path(summary["folder"]).parent == runs
    with Store(runs / "caliper.db") as store:
        (row,) = store.list_runs()
        stored = store.get_run(row.run_id)
    assert stored is not None and list(stored.tags) == ["api"]
    assert stored.summary["latency_ms"] == summary["latency_ms"]
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # quiet unless progress=True


def test_store_false_keeps_nothing(served: Any, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    summary = modelcaliper.run(target=served.grpc_url, protocol="v2-grpc", model_name="mlp",
                               rps=20, duration="1s", warmup="0s", store=False)
    assert summary["requests"]["ok"] == 20 and summary["folder"] is None
    assert list(tmp_path.iterdir()) == []


def test_options_are_checked_like_flags(served: Any) -> None:
    with pytest.raises(UsageError, match="unknown option 'batchsize' in modelcaliper.run"
                                         r"\(\); did you mean 'batch_size'\?"):
        modelcaliper.run(target=served.http_url, protocol="v2-rest", model_name="mlp",
                         batchsize=4)
    with pytest.raises(UsageError, match="--rps must be a finite number > 0"):
        modelcaliper.run(target=served.http_url, protocol="v2-rest", model_name="mlp", rps=-1)

"""Real runs for the store's tests: a fan-out run driven against the mock transport."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcaliper.load.spec import LoadSpec
from modelcaliper.load.summary import build_summary
from modelcaliper.load.workers import RunResult
from tests.load.mock_transport import MockBehaviour, MockTransport
from tests.load.test_driver import drive
from tests.load.test_fanout import query_pool

SPEC = LoadSpec(rate_per_s=40, duration_s=0.5, warmup_s=0.1, candidates=10, batch_size=4,
                deadline_s=0.05, seed=7, data_seed=3)


@dataclass
class DrivenRun:
    """One run's result, its spec and summary, and the records part it wrote."""

    result: RunResult
    spec: LoadSpec
    summary: dict[str, Any]
    records: Path
    queries: Path


def driven_run(records_dir: Path, seed: int = 1) -> DrivenRun:
    """Drive SPEC against a mock target that fails 10 % of requests, keeping the records."""
    transport = MockTransport(MockBehaviour(error_rate=0.1, seed=seed, jitter_s=0.01))
    result, _ = drive(SPEC, transport, records=records_dir, pool=query_pool(SPEC))
    summary = build_summary(result, SPEC, SPEC.plan(), target={
        "url": "http://127.0.0.1:8501", "protocol": "v2-rest", "model": "ranker"})
    return DrivenRun(result, SPEC, summary, records_dir / "requests.parquet",
                     records_dir / "queries.parquet")


def summary_like(template: dict[str, Any], run_id: str, *, model: str = "ranker",
                 p99_ms: float | None = 10.0, started_at: str = "2026-11-27T04:15:00.000Z",
                 version: str | None = None, rate_per_s: float = 40.0,
                 interrupted: bool = False) -> dict[str, Any]:
    """A copy of a real summary with the fields the index reads changed."""
    summary = copy.deepcopy(template)
    summary["run_id"] = run_id
    summary["target"]["model"] = model
    if version is not None:
        summary["target"]["version"] = version
    summary["latency_ms"]["p99"] = p99_ms
    summary["started_at"] = started_at
    summary["load"]["settings"]["rate_per_s"] = rate_per_s
    summary["interrupted"] = interrupted
    return summary


# run id → (model, version, p99 ms, started at, tags, status); created in this order
RUNS = {
    "r1": ("ranker", "1", 30.0, "2026-11-01T10:00:00.000Z", ("nightly",), "completed"),
    "r2": ("ranker", "1", 45.0, "2026-11-02T10:00:00.000Z", ("nightly", "ci"), "completed"),
    "r3": ("ranker", "2", 12.0, "2026-11-03T10:00:00.000Z", ("ci",), "completed"),
    "r4": ("ranker", "2", None, "2026-11-04T10:00:00.000Z", (), "failed"),
    "s1": ("scorer", "7", 80.0, "2026-11-02T12:00:00.000Z", ("nightly",), "interrupted"),
    "s2": ("scorer", "8", 5.0, "2026-11-05T09:30:00.000Z", ("ci", "release"), "completed"),
}


def ids(runs) -> list[str]:
    """The run ids of stored runs, in order."""
    return [run.run_id for run in runs]

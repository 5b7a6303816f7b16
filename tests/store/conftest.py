"""Fixtures of the store's tests: one real summary, driven once per session, and a filled store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcaliper.store import Store
from tests.store.runs import RUNS, driven_run, summary_like


@pytest.fixture(scope="session")
def real_summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The summary of a real fan-out run (with errors, deadline misses and intervals)."""
    run = driven_run(Path(tmp_path_factory.mktemp("records")))
    return run.summary


@pytest.fixture
def store(tmp_path, real_summary):
    """A store holding RUNS."""
    with Store(tmp_path / "runs" / "caliper.db") as opened:
        for run_id, (model, version, p99, started, tags, status) in RUNS.items():
            summary = summary_like(real_summary, run_id, model=model, version=version,
                                   p99_ms=p99, started_at=started)
            opened.save_run(summary, tags=tags, status=status)
        yield opened

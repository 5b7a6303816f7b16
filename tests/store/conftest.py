"""Fixtures of the store's tests: one real summary, driven once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.store.runs import driven_run


@pytest.fixture(scope="session")
def real_summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The summary of a real fan-out run (with errors, deadline misses and intervals)."""
    run = driven_run(Path(tmp_path_factory.mktemp("records")))
    return run.summary

"""Fixtures of the report tests: seeded runs in a store, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcaliper.store import Store
from tests.report.seeded import BASELINE, FASTER, HOSTILE, seed_store

ASSERTIONS = {BASELINE.run_id: [{"expression": "p99<50ms", "passed": True, "actual": 26.7},
                                {"expression": "error_rate<1%", "passed": False,
                                 "actual": 0.031}]}


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run database holding BASELINE, FASTER and HOSTILE (read-only for the tests)."""
    return seed_store(tmp_path_factory.mktemp("seeded"), [BASELINE, FASTER, HOSTILE], ASSERTIONS)


@pytest.fixture(scope="session")
def seeded_runs(seeded_db: Path) -> dict[str, tuple[Path, Any]]:
    """run id → (folder, StoredRun) of every seeded run."""
    with Store(seeded_db) as store:
        return {spec.run_id: (store.resolve_folder(store.get_run(spec.run_id)),
                              store.get_run(spec.run_id))
                for spec in (BASELINE, FASTER, HOSTILE)}

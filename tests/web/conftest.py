"""Fixtures of the web tests: the seeded store served by the real app on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelcaliper.web.app import create_app
from tests.report.conftest import seeded_db, seeded_runs  # noqa: F401  (shared fixtures)
from tests.web.server import serve

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def ui(seeded_db) -> Iterator[str]:  # noqa: F811
    """``host:port`` of the UI over the seeded store, without a token."""
    with serve(create_app(seeded_db)) as address:
        yield address


@pytest.fixture(scope="module")
def guarded(seeded_db) -> Iterator[str]:  # noqa: F811
    """``host:port`` of the UI over the seeded store, with TOKEN required."""
    with serve(create_app(seeded_db, token=TOKEN)) as address:
        yield address

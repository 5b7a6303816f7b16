"""Schemathesis against the jobs API of a UI with new runs on (uvicorn on 127.0.0.1, token
required): generated and malformed bodies for ``POST /api/jobs`` and generated job ids never
give a server error, and every answer matches the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from modelcaliper.web.app import create_app
from tests.web.conftest import TOKEN
from tests.web.newrun_env import make_roots
from tests.web.server import fetch, serve

AUTH = {"authorization": f"Bearer {TOKEN}"}
OPERATIONS = [("/api/jobs", "POST"), ("/api/jobs", "GET"), ("/api/jobs/{job_id}", "GET"),
              ("/api/jobs/{job_id}/events", "GET")]


@pytest.fixture(scope="module")
def runner_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    roots = make_roots(tmp_path_factory.mktemp("fuzz"))
    with serve(create_app(roots.database, token=TOKEN, models_dirs=[roots.models],
                          data_dirs=[roots.data])) as address:
        yield address


@pytest.fixture(scope="module")
def jobs_schema(runner_ui) -> Any:
    answer = fetch(runner_ui, "/api/openapi.json", headers=AUTH)
    assert answer.status == 200
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"token": {"bearer": TOKEN}}}})
    return schemathesis.openapi.from_dict(answer.json(), config=config)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize("path, method", OPERATIONS)
def test_jobs_api_answers_as_documented(jobs_schema, runner_ui, path, method, mode):
    operation = jobs_schema[path][method]

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        # A body can match the schema and still name no model under the roots, or carry a
        # duration like "x": a 400 with the command line's message, by design. So "valid by
        # the schema means accepted" does not hold here; everything else is checked.
        case.call_and_validate(base_url=f"http://{runner_ui}",
                               excluded_checks=[positive_data_acceptance])

    check()

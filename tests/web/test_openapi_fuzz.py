"""Schemathesis against ``/api/openapi.json``: generated calls to every documented operation,
valid and malformed, never give a server error and always answer as the document says
(status codes, content types, response schemas)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from modelcaliper import __version__
from modelcaliper.web.openapi import openapi_document
from tests.web.conftest import TOKEN
from tests.web.server import fetch

AUTH = {"authorization": f"Bearer {TOKEN}"}
OPERATIONS = [(path, method.upper())
              for path, item in openapi_document(__version__)["paths"].items()
              for method in item if method in {"get", "post", "put", "delete", "patch"}]


@pytest.fixture(scope="module")
def api_schema(guarded) -> Any:
    """The document as the real app (uvicorn on 127.0.0.1, token required) serves it."""
    answer = fetch(guarded, "/api/openapi.json", headers=AUTH)
    assert answer.status == 200
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"token": {"bearer": TOKEN}}}})
    return schemathesis.openapi.from_dict(answer.json(), config=config)


def test_every_documented_path_is_fuzzed():
    assert ("/api/runs", "GET") in OPERATIONS and len(OPERATIONS) >= 6


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize("path, method", OPERATIONS)
def test_operation_answers_as_documented(api_schema, guarded, path, method, mode):
    """Positive cases (schema-valid) must succeed or miss a run; negative ones (schema-invalid)
    must be refused with a 4xx; neither may ever get a 5xx."""
    base_url = f"http://{guarded}"
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(base_url=base_url)

    check()

"""``/api/``: listings with filters, one run, its view, comparisons, tags and the OpenAPI doc."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from modelcaliper.store import load_histograms
from tests.report.seeded import BASELINE, FASTER, HOSTILE, HOSTILE_MODEL
from tests.web.server import fetch


@pytest.mark.parametrize("query, expected", [
    ("", [HOSTILE.run_id, FASTER.run_id, BASELINE.run_id]),   # newest first by default
    ("?model=ranker", [FASTER.run_id, BASELINE.run_id]),     # one model
    ("?model=ranker&version=1", [BASELINE.run_id]),          # and one version
    ("?tag=nightly&tag=ci", [FASTER.run_id]),                # every tag given must match
    ("?sort=p99_ms", [FASTER.run_id, BASELINE.run_id, HOSTILE.run_id]),  # ascending p99
    ("?sort=-created_at&limit=1&offset=1", [FASTER.run_id]),  # a page of one
    (f"?model={quote(HOSTILE_MODEL)}", [HOSTILE.run_id]),    # any text is only a value
])
def test_list_runs(ui, query, expected):
    answer = fetch(ui, "/api/runs" + query)
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    data = answer.json()
    assert [r["run_id"] for r in data["runs"]] == expected
    assert data["total"] >= len(expected)


@pytest.mark.parametrize("query, message", [
    ("?sort=p99_ms%3BDROP%20TABLE%20runs", "sort must be one of"),  # refused, never quoted
    ("?limit=0", "limit must be 1..500"),
    ("?limit=ten", "limit must be a whole number"),
    ("?since=yesterday", "RFC 3339"),
    ("?since=2026-11-27", "RFC 3339"),        # the API takes date-times; pages take dates too
    ("?status=done", "status must be one of"),
    ("?model=", "model is empty"),
    ("?tag=%20padded", "surrounding blanks"),
])
def test_bad_parameters_are_400_with_a_message(ui, query, message):
    answer = fetch(ui, "/api/runs" + query)
    assert answer.status == 400 and message in answer.json()["error"]


def test_one_run_has_its_documents(ui):
    data = fetch(ui, f"/api/runs/{BASELINE.run_id}").json()
    assert data["run_id"] == BASELINE.run_id and data["tags"] == ["nightly"]
    assert data["summary"]["requests"]["scheduled"] == BASELINE.requests
    assert data["spec"]["seed"] == BASELINE.seed and data["verdict"] == "fail"


def test_run_view_matches_the_stored_histograms(ui, seeded_runs):
    view = fetch(ui, f"/api/runs/{BASELINE.run_id}/view").json()
    stored = load_histograms(seeded_runs[BASELINE.run_id][0])
    assert sum(view["latency"]["requests"]["bins"]["count"]) == stored["latency"].count
    assert view["latency"]["queries"]["count"] == stored["query_latency"].count
    assert len(view["slowest"]) == 20


@pytest.mark.parametrize("query, baseline", [
    (f"run={BASELINE.run_id}&run={FASTER.run_id}", BASELINE.run_id),          # as given
    (f"run={FASTER.run_id}&run={BASELINE.run_id}", FASTER.run_id),            # as given
    (f"by=time&run={FASTER.run_id}&run={BASELINE.run_id}", BASELINE.run_id),  # oldest first
])
def test_compare(ui, query, baseline):
    data = fetch(ui, f"/api/compare?{query}").json()
    assert data["comparisons"][0]["baseline"] == baseline
    assert data["comparisons"][0]["verdict"].endswith("outside noise")


@pytest.mark.parametrize("path, status", [
    ("/api/runs/20990101-000000-none-000000", 404),       # unknown run
    ("/api/runs/..%2F..%2Fetc/view", 404),                 # not even a run id
    (f"/api/compare?run={BASELINE.run_id}", 400),          # one run is no comparison
    (f"/api/compare?run={BASELINE.run_id}&run=nope", 404),
    ("/api/nothing", 404),
])
def test_errors_are_json(ui, path, status):
    answer = fetch(ui, path)
    assert answer.status == status and "error" in answer.json()


def test_tags(ui):
    assert fetch(ui, "/api/tags").json() == {"<i>tag</i>": 1, "ci": 1, "nightly": 2}


def test_openapi_describes_every_api_route(ui, seeded_db):
    from modelcaliper.web.app import create_app

    document = fetch(ui, "/api/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    app = create_app(seeded_db).app  # the Starlette app behind the guard: its route table
    app.state.store.close()
    routes = {(route.path, method.lower()) for route in app.routes
              if route.path.startswith("/api/") for method in route.methods - {"HEAD"}}
    assert {(path, method) for path, item in document["paths"].items()
            for method in item} == routes
    for path, item in document["paths"].items():
        for operation in item.values():
            assert any(code.startswith("2") for code in operation["responses"])
            assert operation["operationId"]
            for name in re.findall(r"\{(\w+)\}", path):
                assert any(p["name"] == name and p["in"] == "path"
                           for p in operation["parameters"])

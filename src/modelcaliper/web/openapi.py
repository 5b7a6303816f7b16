"""The OpenAPI 3.1 document of ``/api/``, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from modelcaliper.store import SORT_COLUMNS
from modelcaliper.web.newrun_routes import openapi_paths as jobs_paths
from modelcaliper.web.newrun_routes import openapi_schemas as jobs_schemas
from modelcaliper.web.queries import MAX_COMPARED, MAX_OFFSET, MAX_PAGE, PER_PAGE, TAG_PATTERN
from modelcaliper.web.sweeps import sweep_openapi_paths, sweep_openapi_schemas

__all__ = ["openapi_document"]


def _param(name: str, description: str, schema: dict[str, Any], *, where: str = "query",
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


_TEXT = {"type": "string"}
_NONEMPTY = {"type": "string", "minLength": 1}
_TAG = {"type": "string", "pattern": f"^{TAG_PATTERN}$",
        "description": "1-64 characters, no control characters, no blanks around"}
_ERROR = {"description": "bad parameter", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Error"}}}}
_MISSING = {"description": "no such run", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Error"}}}}
_GUARD_401 = {"description": "a token is configured and the request carried none that matches",
              "content": {"text/plain": {"schema": _TEXT}}}
_GUARD_421 = {"description": "no token is configured and the Host is not a loopback name",
              "content": {"text/plain": {"schema": _TEXT}}}
_RUN_ID = _param("run_id", "run id", {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
                 where="path", required=True)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(version: str) -> dict[str, Any]:
    """The API description: every path, its parameters and the shape of its answers."""
    filters = [
        _param("model", "only runs of this model", _NONEMPTY),
        _param("version", "only runs of this model version", _NONEMPTY),
        _param("tag", "only runs carrying this tag (repeat for several: all must match)",
               {"type": "array", "items": _TAG}),
        _param("status", "only runs with this status",
               {"type": "string", "enum": ["running", "completed", "interrupted", "failed"]}),
        _param("since", "runs started at or after (RFC 3339, e.g. 2026-11-27T04:15:00Z)",
               {"type": "string", "format": "date-time"}),
        _param("until", "runs started before (RFC 3339)",
               {"type": "string", "format": "date-time"}),
        _param("sort", "column, '-' prefix for descending (default -created_at)",
               {"type": "string", "enum": [*SORT_COLUMNS, *(f"-{c}" for c in SORT_COLUMNS)]}),
        _param("limit", f"runs per answer (default {PER_PAGE})",
               {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
        _param("offset", "runs to skip", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
    ]
    run_row = {"type": "object", "description": "one row of the run index",
               "properties": {name: {} for name in (
                   "run_id", "created_at", "model", "model_version", "protocol", "encoding",
                   "compression", "target_kind", "target_url", "rate_per_s", "batch_size",
                   "candidates", "arrival", "duration_s", "status", "reason", "verdict",
                   "p50_ms", "p99_ms", "query_p99_ms", "error_rate", "deadline_miss_rate",
                   "achieved_rps", "folder", "tags", "assertions", "summary", "spec",
                   "environment")},
               "required": ["run_id", "created_at", "status"]}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelcaliper UI API", "version": version,
                 "description": "Read-only access to stored load-test runs. With a token "
                                "configured every call needs 'Authorization: Bearer <token>'."},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": _TEXT},
                          "required": ["error"]},
                "Run": run_row,
                "RunList": {"type": "object", "required": ["runs", "total", "limit", "offset"],
                            "properties": {"runs": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/Run"}},
                                           "total": {"type": "integer"},
                                           "limit": {"type": "integer"},
                                           "offset": {"type": "integer"}, "sort": _TEXT}},
                "RunView": {"type": "object", "description": "everything the Run page shows",
                            "required": ["run", "facts", "latency", "intervals", "phases",
                                         "slowest", "errors", "payload"]},
                "CompareView": {"type": "object", "required": ["runs", "series", "comparisons"],
                                "description": "overlaid curves and histograms, deltas with "
                                               "95 % intervals and a verdict per candidate"},
            }},
        "security": [{"token": []}],
        "paths": {
            "/api/runs": {"get": {
                "summary": "list runs", "operationId": "listRuns", "parameters": filters,
                "responses": {"200": _json("a page of runs",
                                           {"$ref": "#/components/schemas/RunList"}),
                              "400": _ERROR}}},
            "/api/runs/{run_id}": {"get": {
                "summary": "one run with its summary, spec and environment",
                "operationId": "getRun", "parameters": [_RUN_ID],
                "responses": {"200": _json("the run", {"$ref": "#/components/schemas/Run"}),
                              "404": _MISSING}}},
            "/api/runs/{run_id}/view": {"get": {
                "summary": "the data of the Run page", "operationId": "getRunView",
                "parameters": [_RUN_ID],
                "responses": {"200": _json("the run's view",
                                           {"$ref": "#/components/schemas/RunView"}),
                              "404": _MISSING}}},
            "/api/compare": {"get": {
                "summary": "compare runs against the first", "operationId": "compareRuns",
                "parameters": [_param("run", f"run ids, 2 to {MAX_COMPARED}; the first is "
                                             "the baseline",
                                      {"type": "array", "items": _TEXT, "minItems": 2,
                                       "maxItems": MAX_COMPARED}, required=True),
                               _param("by", "'time': order the runs oldest first (the oldest "
                                            "becomes the baseline)",
                                      {"type": "string", "enum": ["time"]})],
                "responses": {"200": _json("the comparison",
                                           {"$ref": "#/components/schemas/CompareView"}),
                              "400": _ERROR, "404": _MISSING}}},
            "/api/tags": {"get": {
                "summary": "tags with their run counts", "operationId": "listTags",
                "responses": {"200": _json("tag → runs", {
                    "type": "object", "additionalProperties": {"type": "integer"}})}}},
            "/api/openapi.json": {"get": {
                "summary": "this document", "operationId": "openapi",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})}}},
        },
    }
    document["components"]["schemas"].update(sweep_openapi_schemas())
    document["paths"].update(sweep_openapi_paths({"$ref": "#/components/schemas/Error"}))
    document["components"]["schemas"].update(jobs_schemas())
    document["paths"].update(jobs_paths())
    # The guard in front of every route answers these in plain text, before any route runs.
    for item in document["paths"].values():
        for operation in item.values():
            operation["responses"].setdefault("401", _GUARD_401)
            operation["responses"].setdefault("421", _GUARD_421)
    return document

"""The web UI's sweeps: found where ``caliper sweep`` writes them, listed, and shown.

    GET /sweeps                   every sweep under the sweeps folder, newest first
    GET /sweeps/{sweep_id}        the Sweep page (``report.sweep`` view, ``sweep.html``)
    GET /api/sweeps               the same list as JSON
    GET /api/sweeps/{sweep_id}    the Sweep view as JSON

A sweep is the folder ``<sweeps_dir>/<sweep_id>/`` holding ``sweep.json``; by default the
sweeps folder is ``sweeps/`` next to the run database (``runs/caliper.db`` and
``runs/sweeps/``, as ``caliper sweep`` writes them). A sweep id must be a safe folder name
(the run-id rules: letters, digits, ``.``, ``_``, ``-``), so no id can reach outside the
folder. Points link to their run pages when the store holds their runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import UsageError

__all__ = ["MAX_LISTED", "SweepNotFound", "find_sweeps", "load_sweep", "sweep_data",
           "sweep_listing", "sweep_openapi_paths", "sweep_openapi_schemas", "sweep_routes"]

MAX_LISTED = 500
"""Most sweeps the list shows (the newest)."""


class SweepNotFound(LookupError):
    """A sweep id with no readable ``sweep.json`` under the sweeps folder."""


def _check_id(sweep_id: str) -> str:
    from modelcaliper.store import check_run_id

    try:
        return check_run_id(sweep_id)
    except UsageError:
        raise SweepNotFound(sweep_id) from None


def find_sweeps(sweeps_dir: Path) -> list[Path]:
    """The ``sweep.json`` files under ``sweeps_dir``, newest id first (ids sort by time)."""
    if not sweeps_dir.is_dir():
        return []
    found = [p / "sweep.json" for p in sweeps_dir.iterdir()
             if p.is_dir() and (p / "sweep.json").is_file()]
    return sorted(found, key=lambda p: p.parent.name, reverse=True)[:MAX_LISTED]


def load_sweep(sweeps_dir: Path, sweep_id: str) -> dict[str, Any]:
    """The ``sweep.json`` document of ``sweep_id`` (SweepNotFound when there is none;
    UsageError when the file is not a sweep document)."""
    path = sweeps_dir / _check_id(sweep_id) / "sweep.json"
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise SweepNotFound(sweep_id) from None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); the sweep may still be writing "
                         "it, or it was damaged") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path} is not a sweep document")
    return document


def sweep_listing(sweeps_dir: Path) -> dict[str, Any]:
    """Every sweep found, newest first: its summary row, or why it could not be read."""
    from modelcaliper.report.sweep import sweep_summary

    rows = []
    for path in find_sweeps(sweeps_dir):
        try:
            document = orjson.loads(path.read_bytes())
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            row = {**sweep_summary(document), "sweep_id": path.parent.name, "readable": True,
                   "error": None}
        except (OSError, ValueError) as exc:
            row = {"sweep_id": path.parent.name, "readable": False,
                   "error": f"sweep.json cannot be read: {exc}", "status": None,
                   "started_at": None, "model": None, "model_version": None, "runs": None,
                   "configs": None, "wall_s": None, "saved_s": None, "slo": [], "met": False,
                   "headline": ""}
        rows.append(row)
    return {"sweeps": rows, "total": len(rows), "sweeps_dir": str(sweeps_dir)}


def sweep_data(store: Any, sweeps_dir: Path, sweep_id: str) -> dict[str, Any]:
    """The Sweep view of one sweep, its points linked to the runs the store holds."""
    from modelcaliper.report.sweep import sweep_view

    document = load_sweep(sweeps_dir, sweep_id)
    ids = [p.get("run_id") for p in document.get("points") or [] if isinstance(p, dict)]
    stored = {run_id for run_id in ids if isinstance(run_id, str)
              and store.get_run(run_id) is not None}
    return sweep_view(document, stored_runs=stored)


def sweep_routes(store: Any, sweeps_dir: Path) -> list[Any]:
    """The Starlette routes of the sweeps (pages and API), over ``sweeps_dir``."""
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from modelcaliper.report import html
    from modelcaliper.web.responses import json_response, threaded

    def handler(work: Callable[[Request], Any], answer: Callable[[Any], Response],
                api: bool) -> Callable[[Request], Any]:
        return threaded(work, answer, api=api, missing=SweepNotFound,
                        not_found=lambda exc: f"no sweep {exc.args[0]!r} in {sweeps_dir}")

    def view(request: Request) -> dict[str, Any]:
        return sweep_data(store, sweeps_dir, request.path_params["sweep_id"])

    return [
        Route("/sweeps", handler(lambda r: html.render_sweeps_page(sweep_listing(sweeps_dir)),
                                 HTMLResponse, api=False)),
        Route("/sweeps/{sweep_id}", handler(lambda r: html.render_sweep_page(view(r)),
                                            HTMLResponse, api=False)),
        Route("/api/sweeps", handler(lambda r: sweep_listing(sweeps_dir), json_response,
                                     api=True)),
        Route("/api/sweeps/{sweep_id}", handler(view, json_response, api=True)),
    ]


_SWEEP_ID = {"name": "sweep_id", "in": "path", "required": True,
             "description": "sweep id (the folder name under the sweeps folder)",
             "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,159}$"}}
_NUMBER = {"type": ["number", "null"]}


def sweep_openapi_schemas() -> dict[str, Any]:
    """The schemas of the sweep answers, for ``components.schemas``."""
    text_or_null = {"type": ["string", "null"]}
    return {
        "SweepRow": {"type": "object", "description": "one sweep in the list",
                     "required": ["sweep_id", "readable", "status", "runs", "met", "headline"],
                     "properties": {"sweep_id": {"type": "string"},
                                    "readable": {"type": "boolean"}, "error": text_or_null,
                                    "status": text_or_null, "started_at": text_or_null,
                                    "model": text_or_null, "model_version": text_or_null,
                                    "runs": {"type": ["integer", "null"]},
                                    "configs": {"type": ["integer", "null"]},
                                    "wall_s": _NUMBER, "saved_s": _NUMBER,
                                    "slo": {"type": "array", "items": {"type": "string"}},
                                    "met": {"type": "boolean"}, "headline": {"type": "string"}}},
        "SweepList": {"type": "object", "required": ["sweeps", "total", "sweeps_dir"],
                      "properties": {"sweeps": {"type": "array", "items": {
                          "$ref": "#/components/schemas/SweepRow"}},
                          "total": {"type": "integer", "minimum": 0},
                          "sweeps_dir": {"type": "string"}}},
        "SweepView": {"type": "object", "description": "everything the Sweep page shows: the "
                      "recommendation, chart series, every run, capacity searches, timing",
                      "required": ["sweep", "recommendation", "slo_lines", "batch", "curves",
                                   "bars", "points", "capacity", "timing"],
                      "properties": {
                          "sweep": {"type": "object"},
                          "recommendation": {"type": "object",
                                             "required": ["met", "headline", "ranked"]},
                          "slo_lines": {"type": "array"}, "batch": {"type": "object"},
                          "curves": {"type": "object"}, "bars": {"type": "object"},
                          "points": {"type": "array"}, "capacity": {"type": "array"},
                          "timing": {"type": "object"}}},
    }


def sweep_openapi_paths(error: dict[str, Any]) -> dict[str, Any]:
    """The sweep paths of the API description (``error``: the Error schema reference)."""
    def answer(description: str, ref: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{ref}"}}}}

    missing = {"description": "no such sweep", "content": {"application/json": {
        "schema": error}}}
    unreadable = {"description": "the sweep's sweep.json cannot be read",
                  "content": {"application/json": {"schema": error}}}
    return {
        "/api/sweeps": {"get": {
            "summary": "list the sweeps found in the sweeps folder, newest first",
            "operationId": "listSweeps",
            "responses": {"200": answer("the sweeps", "SweepList")}}},
        "/api/sweeps/{sweep_id}": {"get": {
            "summary": "the data of the Sweep page", "operationId": "getSweep",
            "parameters": [_SWEEP_ID],
            "responses": {"200": answer("the sweep's view", "SweepView"), "400": unreadable,
                          "404": missing}}},
    }

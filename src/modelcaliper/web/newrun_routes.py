"""The New run page and the jobs API of the web UI.

    GET  /runs/new                   the form (models and datasets found under the roots) and
                                     the queue; ``?job=ID`` follows that job's progress
    POST /api/jobs                   queue a run: a JSON object of the form's fields → 202
    GET  /api/jobs                   the queue: running, waiting (in order), finished
    GET  /api/jobs/{id}              one job
    GET  /api/jobs/{id}/events       its events as a server-sent event stream: ``started``,
                                     ``note`` and ``progress`` lines, then ``done`` (with the
                                     run id) or ``failed`` (with the error), and the end

**Cross-site requests.** Starting a run changes things, so ``POST /api/jobs`` takes only
``application/json`` (an HTML form on another site cannot send that without the browser
asking first, which this app never allows), refuses a request whose ``Origin`` is not the
UI's own or whose ``Sec-Fetch-Site`` says it comes from another site, and is answered 403
when the UI was started without ``--models-dir``. The token and Host checks of
``web.security.Guard`` apply to every path here, the event stream included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from modelcaliper.errors import CaliperError
from modelcaliper.web.jobs import JobQueue, QueueFull
from modelcaliper.web.newrun import NewRunSettings, build_form_spec
from modelcaliper.web.responses import json_response

__all__ = ["MAX_BODY_BYTES", "OFF_MESSAGE", "newrun_routes"]

MAX_BODY_BYTES = 64 * 1024
"""Largest ``POST /api/jobs`` body accepted."""
OFF_MESSAGE = ("new runs are off: start caliper ui with --models-dir DIR (and --data-dir DIR "
               "for datasets) to queue runs of the models found there")
_POLL_S = 0.2
_KEEPALIVE_S = 15.0


_json = json_response


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _cross_site(request: Request) -> str | None:
    """Why this request looks like it comes from another site, or None."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a {site} request cannot start runs; use the UI's own page or the API directly"
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
        return "a request from another origin cannot start runs"
    return None


def _label(path: Path, roots: tuple[Path, ...]) -> str:
    root = next((r for r in roots if path.is_relative_to(r)), None)
    return f"{root.name}/{path.relative_to(root)}" if root is not None and path != root \
        else path.name


def _page_data(settings: NewRunSettings | None, queue: JobQueue, watch: str | None
               ) -> dict[str, Any]:
    from modelcaliper.config import PROTOCOLS
    from modelcaliper.web.newrun import discover_datasets, discover_models
    from modelcaliper.wire.compression import COMPRESSIONS

    enabled = settings is not None and settings.enabled
    return {
        "enabled": enabled,
        "models": discover_models(settings.models_dirs) if enabled and settings else [],
        "datasets": discover_datasets(settings.data_dirs) if enabled and settings else [],
        "data_dirs": bool(settings and settings.data_dirs),
        "protocols": list(PROTOCOLS),
        "encodings": {"tfserving-rest": ["rows", "columnar"], "v2-rest": ["json", "binary"]},
        "compressions": list(COMPRESSIONS), "arrivals": ["constant", "poisson", "bursty"],
        "jobs": queue.listing(), "concurrent_runs": queue.concurrent_runs,
        "watch": watch if watch and queue.get(watch) else None,
        "off_message": OFF_MESSAGE,
    }


def newrun_routes(settings: NewRunSettings | None, queue: JobQueue) -> list[Route]:
    """The routes of this module, over ``settings`` (None: new runs off) and ``queue``."""
    import markupsafe

    from modelcaliper.report.html import json_for_script, render_template

    async def new_run_page(request: Request) -> Response:
        watch = request.query_params.get("job")
        data = await run_in_threadpool(_page_data, settings, queue, watch)
        return HTMLResponse(render_template(
            "newrun.html", inline_assets=False, nav=True, title="new run", page=data,
            page_json=markupsafe.Markup(json_for_script(data)), data=None))

    async def submit(request: Request) -> Response:
        refused = _cross_site(request)
        if refused is not None:
            return _error(403, refused)
        if settings is None or not settings.enabled:
            return _error(403, OFF_MESSAGE)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return _error(415, "send the form's fields as JSON (Content-Type: application/json)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
        try:
            fields = orjson.loads(bytes(body))
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the request body is not valid JSON ({exc})")
        try:
            spec = await run_in_threadpool(build_form_spec, fields, settings)
            job = queue.submit(spec, fields, _label(spec.model_path, settings.models_dirs))
        except QueueFull as exc:
            return _error(429, str(exc))
        except CaliperError as exc:
            return _error(400, " ".join(str(exc).split()))
        except OSError as exc:
            return _error(400, f"cannot read {exc.filename or 'a path'}: {exc.strerror or exc}")
        return _json(queue.describe(job), 202, headers={"location": f"/api/jobs/{job.id}"})

    def one(request: Request) -> Any:
        return queue.get(request.path_params["job_id"])

    async def listing(request: Request) -> Response:
        return _json({"jobs": queue.listing(),
                      "enabled": settings is not None and settings.enabled,
                      "concurrent_runs": queue.concurrent_runs})

    async def get_job(request: Request) -> Response:
        job = one(request)
        if job is None:
            return _error(404, f"no job {request.path_params['job_id']!r}")
        return _json(queue.describe(job))

    async def events(request: Request) -> Response:
        job = one(request)
        if job is None:
            return _error(404, f"no job {request.path_params['job_id']!r}")
        try:
            start = int(request.headers.get("last-event-id", "-1")) + 1
        except ValueError:
            start = 0

        async def stream() -> AsyncIterator[bytes]:
            index, quiet_s = max(start, 0), 0.0
            yield b"retry: 2000\n\n"
            while True:
                new, finished = queue.events_since(job, index)
                for name, data in new:
                    yield (f"id: {index}\nevent: {name}\ndata: ".encode()
                           + orjson.dumps(data) + b"\n\n")
                    index += 1
                if finished and not new:
                    return
                quiet_s = 0.0 if new else quiet_s + _POLL_S
                if quiet_s >= _KEEPALIVE_S:
                    quiet_s = 0.0
                    yield b": still running\n\n"
                await asyncio.sleep(_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    return [
        Route("/runs/new", new_run_page, methods=["GET"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs", listing, methods=["GET"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}/events", events, methods=["GET"]),
    ]


def _error_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_schemas() -> dict[str, Any]:
    """The schemas of the jobs API (``JobRequest``, ``Job``, ``JobList``)."""
    from modelcaliper.web.jobs import STATES
    from modelcaliper.web.newrun import FIELDS

    kinds = {"text": {"type": "string"}, "number": {"type": ["number", "string"]},
             "list": {"type": ["string", "array"], "items": {"type": "string"}}}
    text_or_null = {"type": ["string", "null"]}
    return {
        "JobRequest": {
            "type": "object", "required": ["model"], "additionalProperties": False,
            "description": "caliper run options by name; 'model' and 'data' are paths inside "
                           "the UI's --models-dir / --data-dir (as GET /runs/new lists them)",
            "properties": {name: kinds[kind] for name, kind in FIELDS.items()}},
        "Job": {
            "type": "object",
            "required": ["id", "state", "position", "model", "fields", "created_at", "run_id",
                         "error"],
            "properties": {
                "id": {"type": "string"}, "state": {"type": "string", "enum": list(STATES)},
                "position": {"type": ["integer", "null"],
                             "description": "place in the queue while waiting (1 = next)"},
                "model": {"type": "string"}, "fields": {"type": "object"},
                "created_at": {"type": "string"}, "started_at": text_or_null,
                "finished_at": text_or_null, "run_id": text_or_null,
                "run_status": text_or_null, "verdict": text_or_null, "error": text_or_null,
                "progress": {"type": ["object", "null"]}}},
        "JobList": {
            "type": "object", "required": ["jobs", "enabled", "concurrent_runs"],
            "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                           "enabled": {"type": "boolean"},
                           "concurrent_runs": {"type": "integer"}}},
    }


def openapi_paths() -> dict[str, Any]:
    """The paths of the jobs API for ``/api/openapi.json``."""
    job = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    job_id = {"name": "job_id", "in": "path", "required": True, "description": "job id",
              "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"}}
    missing = _error_answer("no such job")
    return {
        "/api/jobs": {
            "get": {"summary": "the run queue: running, waiting in order, finished",
                    "operationId": "listJobs",
                    "responses": {"200": {"description": "the jobs", "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/JobList"}}}}}},
            "post": {"summary": "queue a run of a model under --models-dir",
                     "operationId": "createJob",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/JobRequest"}}}},
                     "responses": {
                         "202": {"description": "queued", "content": job, "headers": {
                             "location": {"schema": {"type": "string"},
                                          "description": "the job's URL"}}},
                         "400": _error_answer("a field is wrong (the message says which)"),
                         "403": _error_answer("new runs are off (no --models-dir), or the "
                                              "request came from another site"),
                         "413": _error_answer(f"body over {MAX_BODY_BYTES} bytes"),
                         "415": _error_answer("the body is not JSON"),
                         "429": _error_answer("too many runs are waiting")}}},
        "/api/jobs/{job_id}": {"get": {
            "summary": "one job", "operationId": "getJob", "parameters": [job_id],
            "responses": {"200": {"description": "the job", "content": job},
                          "404": missing}}},
        "/api/jobs/{job_id}/events": {"get": {
            "summary": "the job's events as server-sent events, until it has finished",
            "operationId": "jobEvents", "parameters": [job_id],
            "responses": {"200": {"description": "events 'started', 'note' and 'progress' "
                                                 "({line, elapsed_s, total_s}), then 'done' "
                                                 "({run_id, status, verdict, reason}) or "
                                                 "'failed' ({error})",
                                  "content": {"text/event-stream": {
                                      "schema": {"type": "string"}}}},
                          "404": missing}}},
    }

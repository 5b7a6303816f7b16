"""The ``caliper ui`` web app: Runs, Run and Compare pages, ``/assets/`` and the ``/api/``.

    GET /                       Runs: filter by model, version, tag; sort; paginate
    GET /runs/{run_id}          Run: charts and tables of one run
    GET /compare?run=A&run=B    Compare: B (and more) against A
    GET /sweeps, /sweeps/{id}   the sweeps found, and one sweep (``web.sweeps``)
    GET /runs/new               New run: the form and the queue (``web.newrun_routes``)
    GET /runs/{id}/profile/...  the op profile's trace.json and tensorboard.zip (``web.files``)
    GET /assets/{name}          the chart library, chart code and styles
    GET /api/...                the same data as JSON (``/api/openapi.json`` describes it)

Pages are rendered by ``report.html`` from the views of ``report.data`` / ``report.compare``,
the same functions the offline HTML report uses. The store is only read. Requests pass the
``web.security.Guard`` first (token, Host check, security headers).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from modelcaliper import __version__
from modelcaliper.errors import UsageError
from modelcaliper.report import html
from modelcaliper.store import Store
from modelcaliper.web import queries
from modelcaliper.web.files import profile_file_routes
from modelcaliper.web.jobs import JobQueue
from modelcaliper.web.newrun import NewRunSettings
from modelcaliper.web.newrun_routes import newrun_routes
from modelcaliper.web.openapi import openapi_document
from modelcaliper.web.responses import json_response, page_error, threaded
from modelcaliper.web.security import Guard
from modelcaliper.web.sweeps import sweep_routes

__all__ = ["create_app"]

_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                  ".LICENSE": "text/plain; charset=utf-8"}


_json, _page_error = json_response, page_error


def _handler(store: Store, work: Callable[[Store, Request], Any],
             answer: Callable[[Any], Response], api: bool) -> Callable[[Request], Any]:
    """A route running ``work`` over the store in a thread; a missing run is a 404."""
    return threaded(lambda request: work(store, request), answer, api=api,
                    missing=queries.NotFound,
                    not_found=lambda exc: f"no run {exc.args[0]!r} in the store")


def _runs_page(store: Store, request: Request) -> str:
    listing = queries.listing(store, request.query_params,
                              request.query_params.getlist("tag"))
    return html.render_runs_page(listing)


def _run_page(store: Store, request: Request) -> str:
    return html.render_run_page(queries.run_data(store, request.path_params["run_id"]))


def _compare_page(store: Store, request: Request) -> str:
    return html.render_compare_page(queries.compare_data(
        store, request.query_params.getlist("run"), request.query_params.get("by") == "time"))


def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in html.ASSETS:
        return Response("no such asset\n", status_code=404, media_type="text/plain")
    suffix = next((s for s in _CONTENT_TYPES if name.endswith(s)), ".LICENSE")
    return Response(html.asset_text(name), media_type=_CONTENT_TYPES[suffix],
                    headers={"cache-control": "max-age=3600"})


def create_app(database: str | Path, *, token: str | None = None,
               models_dirs: Sequence[str | Path] = (), data_dirs: Sequence[str | Path] = (),
               concurrent_runs: int = 1, sweeps_dir: str | Path | None = None) -> Any:
    """The ASGI app over the run database at ``database`` (opened read-mostly, never created
    anew by a page), wrapped in the token / Host guard. With ``models_dirs`` the New run
    page queues runs of the models (and datasets in ``data_dirs``) found there, stored in
    ``database``, ``concurrent_runs`` at a time. Sweeps are read from ``sweeps_dir`` (default:
    ``sweeps/`` next to the database)."""
    path = Path(database)
    if not path.is_file():
        raise UsageError(f"no run database at {path}")
    settings = NewRunSettings.create(models_dirs, data_dirs, path) if models_dirs else None
    jobs = JobQueue(concurrent_runs)
    store = Store(path)
    sweeps = Path(sweeps_dir) if sweeps_dir is not None else path.parent / "sweeps"

    def page(work: Callable[[Store, Request], str]) -> Callable[[Request], Any]:
        return _handler(store, work, HTMLResponse, api=False)

    def api(work: Callable[[Store, Request], Any]) -> Callable[[Request], Any]:
        return _handler(store, work, _json, api=True)

    document = openapi_document(__version__)
    routes = [
        *newrun_routes(settings, jobs),  # before /runs/{run_id}, which would take /runs/new
        Route("/", page(_runs_page)),
        Route("/runs/{run_id}", page(_run_page)),
        Route("/compare", page(_compare_page)),
        Route("/assets/{name}", _asset),
        # Browsers ask for this on pages that name no icon (a 401, a plain error); answering
        # "no content" keeps a 404 out of their consoles.
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/runs", api(lambda s, r: queries.api_listing(
            s, r.query_params, r.query_params.getlist("tag")))),
        Route("/api/runs/{run_id}", api(lambda s, r: queries.stored_run(
            s, r.path_params["run_id"]))),
        Route("/api/runs/{run_id}/view", api(lambda s, r: queries.run_data(
            s, r.path_params["run_id"]))),
        Route("/api/compare", api(lambda s, r: queries.compare_data(
            s, r.query_params.getlist("run"), r.query_params.get("by") == "time"))),
        Route("/api/tags", api(lambda s, r: s.tags())),
        Route("/api/openapi.json", api(lambda s, r: document)),
        *sweep_routes(store, sweeps),
        *profile_file_routes(store),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": f"no such path {request.url.path}"}, 404)
        return _page_error(404, "no such page")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(jobs.close)
        store.close()

    app = Starlette(routes=routes, exception_handlers={404: not_found}, lifespan=lifespan)
    app.state.store = store
    app.state.jobs = jobs
    return Guard(app, token)

"""What every route of the UI answers with: JSON, an error page, and endpoints that run their
work in a thread and turn "not found" and usage errors into 404 and 400 answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from modelcaliper.errors import CaliperError
from modelcaliper.report import html

__all__ = ["json_response", "page_error", "threaded"]


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON (numpy values and non-text keys allowed)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def page_error(status: int, message: str) -> HTMLResponse:
    """The error page (escaped message) with ``status``."""
    return HTMLResponse(html.render_template("error.html", inline_assets=False, nav=True,
                                             title=f"{status}", status=status, message=message),
                        status_code=status)


def threaded(work: Callable[[Request], Any], answer: Callable[[Any], Response], *, api: bool,
             missing: type[Exception],
             not_found: Callable[[Exception], str]) -> Callable[[Request], Any]:
    """An endpoint running ``work`` in a thread: ``missing`` raised becomes a 404 saying
    ``not_found(exc)``, a ``CaliperError`` a 400 with its message (JSON for the API, the error
    page otherwise); a result goes through ``answer``."""

    async def endpoint(request: Request) -> Response:
        try:
            result = await run_in_threadpool(work, request)
        except missing as exc:
            message = not_found(exc)
            return json_response({"error": message}, 404) if api else page_error(404, message)
        except CaliperError as exc:
            message = " ".join(str(exc).split())
            return json_response({"error": message}, 400) if api else page_error(400, message)
        return answer(result)

    return endpoint

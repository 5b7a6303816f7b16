"""Downloads of a run's op profile: the Chrome trace and the TensorBoard log directory.

    GET /runs/{run_id}/profile/trace.json       the trace (Perfetto, chrome://tracing)
    GET /runs/{run_id}/profile/tensorboard.zip  ``profile/`` zipped: ``tensorboard --logdir``
                                                on the unzipped folder opens its profile

Only files ``report.data.profile_files`` finds inside the run's own folder are served; a
symlink or a stored path pointing elsewhere is not.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from modelcaliper.report.data import profile_files
from modelcaliper.web import queries

__all__ = ["profile_file_routes", "zip_folder"]

_NAMES = {"trace.json": "trace", "tensorboard.zip": "tensorboard"}


def zip_folder(folder: Path, prefix: str) -> bytes:
    """Every regular file under ``folder`` (symlinks skipped) in a zip, under ``prefix/``."""
    root = folder.resolve()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            archive.write(path, f"{prefix}/{path.relative_to(root).as_posix()}")
    return buffer.getvalue()


def _find(store: Any, run_id: str, name: str) -> tuple[str, Path] | None:
    try:
        folder = queries.run_folder(store, run_id)
    except queries.NotFound:
        return None
    if folder is None or name not in _NAMES:
        return None
    path = profile_files(Path(folder)).get(_NAMES[name])
    return None if path is None else (_NAMES[name], path)


def profile_file_routes(store: Any) -> list[Route]:
    """The download routes over ``store``."""

    async def download(request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        found = await run_in_threadpool(_find, store, run_id, name)
        if found is None:
            return PlainTextResponse(f"run {run_id!r} has no profile file {name!r}\n",
                                     status_code=404)
        kind, path = found
        if kind == "trace":
            return FileResponse(path, media_type="application/json",
                                filename=f"{run_id}-trace.json")
        body = await run_in_threadpool(zip_folder, path, f"{run_id}-profile")
        return Response(body, media_type="application/zip", headers={
            "content-disposition": f'attachment; filename="{run_id}-tensorboard.zip"'})

    return [Route("/runs/{run_id}/profile/{name}", download)]

"""Downloading a run's Chrome trace and TensorBoard log directory from the UI."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from modelcaliper.store import Store
from modelcaliper.web.app import create_app
from tests.report.seeded import Seeded, write_seeded_run
from tests.web.conftest import TOKEN
from tests.web.server import fetch, serve

PROFILED = "20261127-060000-ranker-eeeeee"
BARE = "20261127-060100-ranker-ffffff"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("profiled")
    folder = write_seeded_run(root, Seeded(PROFILED, profile=False))
    profile = Path(folder.path) / "profile"
    (profile / "plugins" / "profile" / "run1").mkdir(parents=True)
    (profile / "plugins" / "profile" / "run1" / "host.xplane.pb").write_bytes(b"\x0a\x01x")
    (profile / "trace.json").write_text('{"traceEvents": [{"name": "MatMul"}]}')
    (profile / "profile.json").write_bytes(orjson.dumps({
        "format": "modelcaliper.profile/1", "status": "ok", "runtime": "tensorflow",
        "trace_path": str(profile / "trace.json"), "summary": {"total_us": 1.0, "groups": []},
        "ops": []}))
    bare = write_seeded_run(root, Seeded(BARE, profile=False))
    with Store(root / "caliper.db") as store:
        for run in (folder, bare):
            store.save_run(run)
    with serve(create_app(root / "caliper.db", token=TOKEN)) as address:
        yield address


def test_trace_downloads_as_json(ui: str) -> None:
    answer = fetch(ui, f"/runs/{PROFILED}/profile/trace.json", AUTH)
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert orjson.loads(answer.body)["traceEvents"][0]["name"] == "MatMul"
    assert f'filename="{PROFILED}-trace.json"' in answer.headers["content-disposition"]


def test_tensorboard_directory_downloads_as_a_zip(ui: str) -> None:
    answer = fetch(ui, f"/runs/{PROFILED}/profile/tensorboard.zip", AUTH)
    assert answer.status == 200 and answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.body))
    xplane = f"{PROFILED}-profile/plugins/profile/run1/host.xplane.pb"
    assert xplane in archive.namelist() and archive.read(xplane) == b"\x0a\x01x"


@pytest.mark.parametrize("path", [
    f"/runs/{BARE}/profile/trace.json",          # a run without a profile
    f"/runs/{PROFILED}/profile/profile.json",    # only the two named downloads exist
    f"/runs/{PROFILED}/profile/..%2Fsummary.json",
    "/runs/20991231-000000-none-000000/profile/trace.json",
    "/runs/..%2F..%2Fetc/profile/trace.json",
])
def test_anything_else_is_404(ui: str, path: str) -> None:
    assert fetch(ui, path, AUTH).status == 404


def test_downloads_need_the_token(ui: str) -> None:
    assert fetch(ui, f"/runs/{PROFILED}/profile/trace.json").status == 401

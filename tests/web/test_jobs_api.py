"""The jobs API and the New run page against the real app on 127.0.0.1: real runs of a tiny
ONNX model, queued one at a time, their progress as server-sent events, stored in the UI's
database; cross-site posts, bad values and missing tokens refused."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.store import Store
from modelcaliper.web.app import create_app
from modelcaliper.web.jobs import JobQueue, QueueFull
from modelcaliper.web.newrun import NewRunSettings, build_form_spec
from tests.web.conftest import TOKEN
from tests.web.newrun_env import MODEL_FILE, Roots, make_roots
from tests.web.server import Answer, fetch, serve

HOSTILE_FILE = "<img src=x onerror=alert(1)>.onnx"
SHORT = {"rps": 5, "duration": "1s", "warmup": "0s", "protocol": "v2-rest"}


def send(address: str, path: str, body: bytes | str, headers: dict[str, str] | None = None,
         method: str = "POST") -> Answer:
    """One request with a body; redirects are returned, not followed."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()


def post_job(address: str, fields: dict[str, Any], headers: dict[str, str] | None = None
             ) -> Answer:
    return send(address, "/api/jobs", orjson.dumps(fields),
                {"content-type": "application/json", **(headers or {})})


def events(address: str, job_id: str, headers: dict[str, str] | None = None
           ) -> list[tuple[str, dict[str, Any]]]:
    """Read a job's event stream to its end: (event name, data) in order."""
    answer = fetch(address, f"/api/jobs/{job_id}/events", headers)
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    found = []
    for block in answer.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines()
                     if ": " in line and not line.startswith(":"))
        if "event" in lines:
            found.append((lines["event"], orjson.loads(lines["data"])))
    return found


def wait_for(address: str, job_id: str, state: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = fetch(address, f"/api/jobs/{job_id}").json()
        if job["state"] == state or (state == "finished" and job["state"] in ("completed",
                                                                             "failed")):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never became {state}")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    world = make_roots(tmp_path_factory.mktemp("jobs"))
    (world.models / HOSTILE_FILE).write_bytes((world.models / MODEL_FILE).read_bytes())
    (world.data / "misfit.csv").write_text("nothing\n1\n2\n", encoding="utf-8")
    return world


@pytest.fixture(scope="module")
def runner_ui(roots: Roots) -> Iterator[str]:
    """The UI with model and data roots: new runs on, one at a time."""
    with serve(create_app(roots.database, models_dirs=[roots.models],
                          data_dirs=[roots.data])) as address:
        yield address


@pytest.fixture(scope="module")
def guarded_runner(roots: Roots) -> Iterator[str]:
    """The same with the token required."""
    with serve(create_app(roots.database, token=TOKEN, models_dirs=[roots.models],
                          data_dirs=[roots.data])) as address:
        yield address


# ---------------------------------------------------------------------- off, refused, bad


def test_without_model_roots_the_page_says_how_and_posts_are_refused(ui):
    page = fetch(ui, "/runs/new")
    assert page.status == 200 and "--models-dir DIR" in page.text
    assert 'id="newrun-form"' not in page.text
    answer = post_job(ui, {"model": MODEL_FILE})
    assert answer.status == 403 and "new runs are off" in answer.json()["error"]
    assert fetch(ui, "/api/jobs").json() == {"jobs": [], "enabled": False, "concurrent_runs": 1}


@pytest.mark.parametrize("headers, status, message", [
    # a form on another site can send only these content types without asking first
    ({"content-type": "application/x-www-form-urlencoded"}, 415, "as JSON"),
    ({"content-type": "text/plain"}, 415, "as JSON"),
    ({"content-type": "multipart/form-data; boundary=x"}, 415, "as JSON"),
    # JSON, but from another origin or site
    ({"content-type": "application/json", "origin": "http://evil.example"}, 403,
     "another origin"),
    ({"content-type": "application/json", "sec-fetch-site": "cross-site"}, 403,
     "cross-site request"),
    ({"content-type": "application/json", "sec-fetch-site": "same-site"}, 403,
     "same-site request"),
])
def test_cross_site_posts_cannot_start_runs(runner_ui, headers, status, message):
    answer = send(runner_ui, "/api/jobs", orjson.dumps({"model": MODEL_FILE, **SHORT}), headers)
    assert answer.status == status and message in answer.json()["error"]
    assert fetch(runner_ui, "/api/jobs").json()["jobs"] == []  # nothing was queued


def test_the_pages_own_origin_is_accepted(runner_ui):
    answer = post_job(runner_ui, {"model": MODEL_FILE, "batch_size": 0},
                      {"origin": f"http://{runner_ui}", "sec-fetch-site": "same-origin"})
    assert answer.status == 400  # past the origin check, stopped by the value


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (orjson.dumps({"model": MODEL_FILE, "batch_size": 0}), "--batch-size must be ≥ 1, got 0"),
    (orjson.dumps({"model": "../outside/secret.onnx"}), "must not contain '..'"),
    (orjson.dumps({"model": MODEL_FILE, "launch": "touch /tmp/x"}), "unknown field 'launch'"),
])
def test_bad_bodies_get_the_one_line_message(runner_ui, body, message):
    answer = send(runner_ui, "/api/jobs", body, {"content-type": "application/json"})
    assert answer.status == 400 and message in answer.json()["error"]
    assert "\n" not in answer.json()["error"]


def test_a_huge_body_is_refused(runner_ui):
    body = orjson.dumps({"model": MODEL_FILE, "where": "x" * 70_000})
    assert send(runner_ui, "/api/jobs", body, {"content-type": "application/json"}).status == 413


def test_unknown_jobs_are_404(runner_ui):
    for path in ("/api/jobs/0123456789ab", "/api/jobs/0123456789ab/events"):
        answer = fetch(runner_ui, path)
        assert answer.status == 404 and "no job" in answer.json()["error"]


# ---------------------------------------------------------------------- real runs


def test_a_queued_run_streams_its_progress_and_is_stored(runner_ui):
    answer = post_job(runner_ui, {"model": MODEL_FILE, "data": "rows.parquet",
                                  "tag": ["from-ui"], **SHORT})
    assert answer.status == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["state"] in ("queued", "running") and job["model"] == f"models/{MODEL_FILE}"
    stream = events(runner_ui, job["id"])
    names = [name for name, _ in stream]
    assert names[0] == "started" and names[-1] == "done" and "progress" in names
    assert any("starting the embedded server" in data["line"] for name, data in stream
               if name == "note")
    progress = [data for name, data in stream if name == "progress"]
    assert progress[-1]["total_s"] == 1.0 and "sent" in progress[-1]["line"]
    done = stream[-1][1]
    assert done["status"] == "completed"
    finished = fetch(runner_ui, f"/api/jobs/{job['id']}").json()
    assert finished["state"] == "completed" and finished["run_id"] == done["run_id"]
    # stored in the database the UI reads, like any run
    run = fetch(runner_ui, f"/api/runs/{done['run_id']}").json()
    assert run["tags"] == ["from-ui"] and run["rate_per_s"] == 5 and run["status"] == "completed"
    assert run["summary"]["requests"]["ok"] == 5
    assert fetch(runner_ui, f"/runs/{done['run_id']}").status == 200
    # a stream opened after the end replays everything, then ends
    assert events(runner_ui, job["id"]) == stream


def test_runs_wait_in_order_one_at_a_time(runner_ui):
    first = post_job(runner_ui, {"model": MODEL_FILE, **SHORT, "duration": "2s"}).json()
    second = post_job(runner_ui, {"model": "ranker", "model_version": "1", **SHORT}).json()
    wait_for(runner_ui, first["id"], "running")
    listing = fetch(runner_ui, "/api/jobs").json()["jobs"]
    states = {job["id"]: (job["state"], job["position"]) for job in listing}
    assert states[first["id"]] == ("running", None)
    assert states[second["id"]] == ("queued", 1)
    assert [job["id"] for job in listing][:2] == [first["id"], second["id"]]
    page = fetch(runner_ui, "/runs/new").text
    assert f'data-job="{second["id"]}"' in page and "queued (#1)" in page
    one = wait_for(runner_ui, first["id"], "completed")
    two = wait_for(runner_ui, second["id"], "completed")
    assert datetime.fromisoformat(two["started_at"]) >= datetime.fromisoformat(one["finished_at"])
    run = fetch(runner_ui, f"/api/runs/{two['run_id']}").json()
    assert run["model_version"] == "1"


def test_a_run_that_cannot_start_fails_with_its_message(runner_ui):
    answer = post_job(runner_ui, {"model": MODEL_FILE, "data": "misfit.csv", **SHORT})
    assert answer.status == 202
    stream = events(runner_ui, answer.json()["id"])
    name, data = stream[-1]
    assert name == "failed" and "features" in data["error"]
    job = fetch(runner_ui, f"/api/jobs/{answer.json()['id']}").json()
    assert job["state"] == "failed" and job["run_id"] is None and job["error"] == data["error"]


def test_the_page_lists_models_and_versions_and_escapes_names(runner_ui):
    page = fetch(runner_ui, "/runs/new").text
    assert f"models/{MODEL_FILE}" in page and "versions 1, 3" in page
    assert "rows.parquet" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.onnx" in page


def test_the_event_stream_needs_the_token(guarded_runner):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert post_job(guarded_runner, {"model": MODEL_FILE, **SHORT}).status == 401
    answer = post_job(guarded_runner, {"model": MODEL_FILE, **SHORT}, bearer)
    assert answer.status == 202
    path = f"/api/jobs/{answer.json()['id']}/events"
    for headers in ({}, {"Authorization": "Bearer wrong-token-123"},
                    {"Cookie": "caliper_token=nope"}):
        refused = fetch(guarded_runner, path, headers)
        assert refused.status == 401 and b"event:" not in refused.body
    assert events(guarded_runner, answer.json()["id"], bearer)[-1][0] == "done"
    cookie = {"Cookie": f"caliper_token={TOKEN}"}
    assert events(guarded_runner, answer.json()["id"], cookie)[-1][0] == "done"


def test_a_full_queue_refuses_and_closing_drops_the_waiting(roots: Roots, tmp_path: Path):
    settings = NewRunSettings.create([roots.models], [roots.data], tmp_path / "caliper.db")
    spec = build_form_spec({"model": MODEL_FILE, **SHORT, "duration": "30s"}, settings)
    queue = JobQueue(1, max_queued=1)
    running = queue.submit(spec, {}, "running")
    deadline = time.monotonic() + 30
    while queue.describe(running)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    waiting = queue.submit(spec, {}, "waiting")
    with pytest.raises(QueueFull, match="1 runs are already waiting"):
        queue.submit(spec, {}, "refused")
    while running.progress is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the load has started
    queue.close(timeout_s=30)
    assert waiting.state == "failed" and waiting.error == "the UI shut down"
    # the running load ended early, before its schedule's end, and was still stored
    assert running.state == "completed" and running.run_status == "completed"
    with Store(tmp_path / "caliper.db") as store:
        summary = store.get_run(running.run_id).summary
    assert summary["stopped_early"] is True
    assert summary["requests"]["scheduled"] < 5 * 30

"""The New run page in a real headless browser: fill the form for a tiny ONNX model and a
Parquet dataset, queue the run, watch its progress arrive over server-sent events, land on the
stored run's page. Screenshots go to test-artifacts/ui/ like the other browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelcaliper.store import Store
from modelcaliper.web.app import create_app
from tests.web.conftest import TOKEN
from tests.web.newrun_env import MODEL_FILE, Roots, make_roots
from tests.web.server import serve
from tests.web.test_browser import browser, watched  # noqa: F401  (shared fixtures)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return make_roots(tmp_path_factory.mktemp("browser-newrun"))


@pytest.fixture(scope="module")
def runner_ui(roots: Roots) -> Iterator[str]:
    with serve(create_app(roots.database, token=TOKEN, models_dirs=[roots.models],
                          data_dirs=[roots.data])) as address:
        yield address


def test_the_form_queues_a_run_and_opens_its_page(runner_ui, roots, watched):  # noqa: F811
    page = watched.page
    # the token once in the URL, as a user would open it; kept in the cookie afterwards,
    # which the event stream needs too
    page.goto(f"http://{runner_ui}/runs/new?token={TOKEN}", wait_until="load")
    assert TOKEN not in page.url
    form = page.locator("#newrun-form")
    options = form.locator("select[name=model] option").all_inner_texts()
    assert any(o.startswith(f"models/{MODEL_FILE}") for o in options)
    # the version list follows the model; the encodings follow the protocol
    form.locator("select[name=model]").select_option(str(roots.models.resolve() / "ranker"))
    assert form.locator("select[name=model_version] option").all_inner_texts() == \
        ["latest", "3", "1"]
    form.locator("select[name=protocol]").select_option("v2-rest")
    assert form.locator("select[name=encoding] option").all_inner_texts() == \
        ["default", "json", "binary"]
    # a bad value: the command line's message next to the form, nothing queued
    form.locator("input[name=duration]").fill("soon")
    form.locator("button[type=submit]").click()
    page.wait_for_function(
        "() => document.getElementById('form-error').textContent.length > 0")
    assert page.locator("#form-error").inner_text() == \
        "--duration must look like 250ms, 2s or 1m, got 'soon'"
    assert [p for p in watched.problems if "status of 400" in p] != []  # the refused post
    watched.problems = [p for p in watched.problems if "status of 400" not in p]
    # now a good run
    form.locator("select[name=model]").select_option(str(roots.models.resolve() / MODEL_FILE))
    form.locator("select[name=data]").select_option(str(roots.data.resolve() / "rows.parquet"))
    form.locator("input[name=batch_size]").fill("2")
    form.locator("input[name=rps]").fill("10")
    form.locator("input[name=duration]").fill("2s")
    form.locator("input[name=warmup]").fill("0s")
    form.locator("input[name=tag]").fill("browser, form")
    watched.shot("newrun-form.png")
    form.locator("button[type=submit]").click()
    page.wait_for_function(
        "() => window.caliperNewRun.events.some(e => e.event === 'progress')", timeout=60_000)
    assert page.locator("#job").is_visible()
    assert "sent" in page.locator("#job-line").inner_text()
    watched.shot("newrun-progress.png")
    page.wait_for_url("**/runs/2*", timeout=60_000)
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function(
        "() => window.caliper && Object.keys(window.caliper.charts).length"
        " + window.caliper.failed.length"
        " === document.querySelectorAll('[data-chart]').length", timeout=15_000)
    assert page.locator("h1 .model").inner_text() == "tiny-mlp-for-the-form"
    watched.shot("newrun-result.png")
    with Store(roots.database) as store:
        stored = store.get_run(run_id)
    assert stored is not None and stored.status == "completed"
    assert list(stored.tags) == ["browser", "form"]
    assert stored.summary["load"]["batch_size"] == 2
    # back on the page, the queue shows the finished job linking to its run
    page.goto(f"http://{runner_ui}/runs/new", wait_until="load")
    assert page.locator(f'#queue a[href="/runs/{run_id}"]').count() == 1

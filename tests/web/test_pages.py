"""The Runs, Run and Compare pages, assets, and escaping of everything stored."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.report.seeded import BASELINE, FASTER, HOSTILE, HOSTILE_ERROR, HOSTILE_MODEL
from tests.web.server import fetch


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)">', page)


@pytest.mark.parametrize("query, expected", [
    ("", [HOSTILE.run_id, FASTER.run_id, BASELINE.run_id]),  # newest first
    ("?model=ranker", [FASTER.run_id, BASELINE.run_id]),    # filtered by model
    ("?version=2", [FASTER.run_id]),                        # by version
    ("?tag=ci", [FASTER.run_id]),                           # by tag
    ("?sort=-p99_ms", [HOSTILE.run_id, BASELINE.run_id, FASTER.run_id]),  # sorted
    ("?per_page=2&page=2", [BASELINE.run_id]),              # paginated
])
def test_runs_page(ui, query, expected):
    answer = fetch(ui, "/" + query)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")
    assert _rows(answer.text) == expected


def test_runs_page_links_sort_and_pages(ui):
    page = fetch(ui, "/?per_page=1&sort=p99_ms").text
    assert 'rel="next" href="/?per_page=1&amp;sort=p99_ms&amp;page=2"' in page
    assert 'href="/?per_page=1&amp;sort=-p99_ms&amp;page=1"' in page  # click again: flip


def test_run_page_has_every_chart(ui):
    page = fetch(ui, f"/runs/{BASELINE.run_id}").text
    charts = re.findall(r'data-chart="([a-z-]+)"', page)
    assert sorted(set(charts)) == ["errors-time", "histogram", "lag-time", "latency-time",
                                   "percentiles", "rate", "server-cdf"]
    assert 'src="/assets/uPlot.iife.min.js"' in page and "<script>" not in page
    assert page.count('class="wf-row"') == 20


def test_compare_page(ui):
    page = fetch(ui, f"/compare?run={BASELINE.run_id}&run={FASTER.run_id}").text
    assert "outside noise" in page and page.count('data-chart="compare-') == 4


@pytest.mark.parametrize("path", [
    "/",                                              # the runs table
    f"/runs/{HOSTILE.run_id}",                        # the run's own page
    f"/compare?run={BASELINE.run_id}&run={HOSTILE.run_id}",
    f"/?model={quote(HOSTILE_MODEL)}",                # a filter echoed into the form
    f"/runs/{quote(HOSTILE_MODEL)}",                  # a hostile id in a 404 page
])
def test_stored_and_requested_text_is_escaped(ui, path):
    page = fetch(ui, path).text
    for raw in (HOSTILE_MODEL, HOSTILE_ERROR, "<b>9</b>", "<i>tag</i>", "<img"):
        assert raw not in page
    assert re.findall(r"<script[^>]*>", page) == [
        '<script type="application/json" id="caliper-data">',
        '<script src="/assets/uPlot.iife.min.js">', '<script src="/assets/caliper.js">']


def test_pages_carry_security_headers(ui):
    answer = fetch(ui, "/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("path, status, kind", [
    ("/assets/uPlot.iife.min.js", 200, "text/javascript"),
    ("/assets/caliper.css", 200, "text/css"),
    ("/assets/uPlot.LICENSE", 200, "text/plain"),
    ("/assets/seeded.py", 404, "text/plain"),          # only the listed assets
    ("/assets/..%2F..%2Fstore%2Fsqlite.py", 404, ""),  # no way out of the folder
    ("/runs/20990101-000000-none-000000", 404, "text/html"),
    (f"/compare?run={BASELINE.run_id}", 400, "text/html"),
])
def test_assets_and_missing_pages(ui, path, status, kind):
    answer = fetch(ui, path)
    assert answer.status == status
    assert answer.headers.get("content-type", "").startswith(kind)

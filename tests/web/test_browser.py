"""The pages in a real headless browser: Playwright driving Debian's Chromium.

Every page is opened against the real app on 127.0.0.1 (and the offline report from disk);
each chart must be drawn — canvas pixels painted — with the run's stored data (bars, points
and sums checked against the store), with no console error, no page error and no dialog
(a hostile model name would open one if it ever ran). Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelcaliper.report.compare import compare_view
from modelcaliper.report.data import run_view
from modelcaliper.report.distributions import bin_indices
from modelcaliper.report.html import render_report
from modelcaliper.store import load_histograms, load_intervals
from tests.report.seeded import BASELINE, FASTER, HOSTILE, HOSTILE_MODEL
from tests.web.conftest import TOKEN

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"

_CHART_STATE = """() => {
  const out = {};
  for (const [id, chart] of Object.entries(window.caliper.charts)) {
    const data = chart.plot.data;
    const canvas = document.getElementById(id).querySelector("canvas");
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
    out[id] = {kind: chart.kind, points: chart.points, xs: data[0].length, painted: painted,
               series: data.slice(1).map(s => ({
                 present: s.filter(v => v != null).length,
                 sum: s.reduce((a, v) => a + (v || 0), 0), last: s[s.length - 1]}))};
  }
  return {charts: out, failed: window.caliper.failed,
          expected: document.querySelectorAll("[data-chart]").length};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian's package (``.ci/run`` installs it)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (as .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


class Watched:
    """A page with its console errors, page errors, dialogs and requests collected."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"),
                                          d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> dict[str, Any]:
        """Load ``url``, wait for the charts, return their state."""
        self.page.goto(url, wait_until="load")
        self.page.wait_for_function(
            "window.caliper && Object.keys(window.caliper.charts).length"
            " + window.caliper.failed.length"
            " === document.querySelectorAll('[data-chart]').length", timeout=15_000)
        return self.page.evaluate(_CHART_STATE)

    def shot(self, name: str) -> None:
        """Save a full-page screenshot as a test artefact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)

    def close(self) -> None:
        """Close the page's context."""
        self.context.close()


@pytest.fixture
def watched(browser) -> Iterator[Watched]:
    """A fresh watched page; fails the test on any console error, page error or dialog."""
    page = Watched(browser)
    yield page
    page.close()
    assert page.problems == []


def _check_run_charts(state: dict[str, Any], folder: Path, run_id: str) -> None:
    assert state["failed"] == [] and len(state["charts"]) == state["expected"]
    histograms = load_histograms(folder)
    rows = load_intervals(folder)["rows"]
    for series, name in (("requests", "latency"), ("queries", "query_latency")):
        hist = histograms[name]
        bars = state["charts"][f"chart-{run_id}-histogram-{series}"]
        (drawn,) = bars["series"]
        assert drawn["present"] == bars["points"] == len(bin_indices(hist)[0])
        assert drawn["sum"] == hist.count
        curve = state["charts"][f"chart-{run_id}-percentiles-{series}"]
        assert curve["xs"] == 41
        assert curve["series"][0]["last"] == pytest.approx(hist.percentile(99.99) / 1e3)
    rate = state["charts"][f"chart-{run_id}-rate"]
    assert rate["xs"] == len(rows)
    assert rate["series"][0]["sum"] == pytest.approx(sum(r["count"] for r in rows))
    lag = state["charts"][f"chart-{run_id}-lag-time"]  # schedule lag p99 and max per second
    assert lag["xs"] == lag["points"] == len(rows)
    for drawn, key in zip(lag["series"], ("lag_p99_ms", "lag_max_ms"), strict=True):
        assert drawn["present"] == sum(r[key] is not None for r in rows)
        assert drawn["sum"] == pytest.approx(sum(r[key] or 0.0 for r in rows))
    for chart_id, chart in state["charts"].items():
        assert chart["painted"] > 1000, f"{chart_id} has nothing drawn"


@pytest.mark.parametrize("spec", [BASELINE, HOSTILE], ids=["baseline", "hostile"])
def test_run_page_draws_the_stored_data(ui, watched, seeded_runs, spec):
    state = watched.open(f"http://{ui}/runs/{spec.run_id}")
    _check_run_charts(state, seeded_runs[spec.run_id][0], spec.run_id)
    assert watched.page.locator("h1 .model").inner_text() == spec.model
    watched.shot(f"run-{spec.run_id}.png")


def test_runs_page_shows_hostile_text_as_text_and_leads_to_compare(ui, watched):
    watched.open(f"http://{ui}/")
    page = watched.page
    assert page.locator("tr[data-run]").count() == 3
    assert page.locator(f'tr[data-run="{HOSTILE.run_id}"] td.model').inner_text() == \
        HOSTILE_MODEL
    watched.shot("runs.png")
    page.locator(f'input[value="{BASELINE.run_id}"]').check()
    page.locator(f'input[value="{FASTER.run_id}"]').check()
    page.locator("#compare-form button[type=submit]").click()
    page.wait_for_url("**/compare?*")
    # ticked in the table, newest first; the oldest becomes the baseline
    assert page.url.endswith(f"/compare?by=time&run={FASTER.run_id}&run={BASELINE.run_id}")
    verdict = page.locator(".verdict-line").inner_text()
    assert verdict.startswith(f"{FASTER.run_id} against {BASELINE.run_id}")


def test_compare_page_overlays_every_run(ui, watched):
    runs = (BASELINE, FASTER, HOSTILE)
    state = watched.open(f"http://{ui}/compare?" + "&".join(f"run={s.run_id}" for s in runs))
    assert state["failed"] == [] and len(state["charts"]) == 4
    for series in ("requests", "queries"):
        curves = state["charts"][f"chart-compare-percentiles-{series}"]
        assert len(curves["series"]) == 3 and curves["xs"] == 41
        bins = state["charts"][f"chart-compare-histogram-{series}"]
        assert [s["sum"] for s in bins["series"]] == pytest.approx([1.0] * 3, abs=1e-4)
        assert bins["painted"] > 1000 and curves["painted"] > 1000
    verdicts = watched.page.locator(".verdict-text").all_inner_texts()
    assert len(verdicts) == 2 and verdicts[0].endswith("outside noise")
    watched.shot("compare.png")


def test_offline_report_opens_from_disk_without_the_network(watched, seeded_runs, tmp_path):
    pairs = [seeded_runs[s.run_id] for s in (BASELINE, FASTER)]
    report = tmp_path / "report.html"
    report.write_text(render_report([run_view(f, r) for f, r in pairs], compare_view(pairs)),
                      encoding="utf-8")
    state = watched.open(report.as_uri())
    # two compare charts per series, then per run 9: 2 histograms, 2 curves, 4 over time, server
    assert state["failed"] == [] and len(state["charts"]) == state["expected"] == 4 + 2 * 9
    _check_run_charts(state, pairs[0][0], BASELINE.run_id)
    assert all(url.startswith(("file:", "data:")) for url in watched.requests)
    watched.shot("report.png")


def test_a_token_opened_once_lets_the_browser_in(guarded, watched):
    answer = watched.page.goto(f"http://{guarded}/runs/{BASELINE.run_id}")
    assert answer.status == 401
    watched.open(f"http://{guarded}/runs/{BASELINE.run_id}?token={TOKEN}")
    assert TOKEN not in watched.page.url
    state = watched.open(f"http://{guarded}/compare?run={BASELINE.run_id}&run={FASTER.run_id}")
    assert len(state["charts"]) == 4
    watched.problems = [p for p in watched.problems if "401" not in p]  # the refused first try

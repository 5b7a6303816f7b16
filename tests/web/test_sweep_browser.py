"""The Sweep page of a real sweep in a real browser (Playwright driving Debian's Chromium).

A small ``caliper sweep`` (a tiny ONNX MLP over v2 REST: JSON and binary at batch 2 and 8,
four short early-stopped points) is run once; its page in the UI and its offline report
(``caliper sweep --html``) must draw every chart with the sweep's own data — each series
with as many points as the view has for it — with no console error. Screenshots go to
test-artifacts/ui/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from modelcaliper.cli.main import main
from modelcaliper.report.sweep import sweep_view
from modelcaliper.store import Store
from modelcaliper.web.app import create_app
from tests.models import build_onnx_mlp
from tests.web.server import serve
from tests.web.test_browser import browser, watched  # noqa: F401  (shared fixtures)

_SWEEP_STATE = """() => {
  const out = {};
  for (const [id, chart] of Object.entries(window.caliper.charts)) {
    const data = chart.plot.data;
    const canvas = document.getElementById(id).querySelector("canvas");
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
    out[id] = {kind: chart.kind, points: chart.points, painted: painted, x: data[0],
               series: data.slice(1), labels: chart.plot.series.slice(1).map(s => s.label)};
    if (chart.kind === "sweep-curves") {
      // the colour at the centre of every point's dot
      const u = chart.plot, ctx = canvas.getContext("2d");
      out[id].dots = data.slice(1).map((xy, s) => xy[0].map((x, i) => {
        const at = [Math.round(u.valToPos(x, "x", true)),
                    Math.round(u.valToPos(xy[1][i], "y", true))];
        const px = ctx.getImageData(at[0], at[1], 1, 1).data;
        return {at: at, alpha: px[3], color: "#" + [px[0], px[1], px[2]].map(
          c => c.toString(16).padStart(2, "0")).join("")};
      }));
      out[id].strokes = u.series.slice(1).map(s => s._stroke || s.stroke);
    }
  }
  return {charts: out, failed: window.caliper.failed};
}"""


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory) -> dict[str, Any]:
    """A finished 4-point sweep: its runs folder, document and offline report."""
    root = tmp_path_factory.mktemp("real-sweep")
    model = build_onnx_mlp(root / "mlp.onnx", n_inputs=6, hidden=(8,))
    runs, report = root / "runs", root / "sweep.html"
    code = main(["sweep", str(model), "--protocol", "v2-rest", "--encoding", "json,binary",
                 "--batch-size", "2,8", "--rps", "60", "--duration", "4s", "--warmup", "0.5s",
                 "--min-requests", "100", "--min-duration", "1s", "--slo", "p99<2s",
                 "--no-pin", "--quiet", "--runs-dir", str(runs), "--html", str(report)])
    assert code == 0
    (document_path,) = (runs / "sweeps").glob("*/sweep.json")
    return {"runs": runs, "document": orjson.loads(document_path.read_bytes()),
            "report": report}


@pytest.fixture(scope="module")
def sweep_ui(real_sweep) -> Iterator[str]:
    """The UI over the sweep's run database (its sweeps folder found next to it)."""
    with serve(create_app(real_sweep["runs"] / "caliper.db")) as address:
        yield address


def _open(watched, url: str) -> dict[str, Any]:  # noqa: F811
    watched.page.goto(url, wait_until="load")
    watched.page.wait_for_function(
        "window.caliper && Object.keys(window.caliper.charts).length"
        " + window.caliper.failed.length"
        " === document.querySelectorAll('[data-chart]').length", timeout=15_000)
    return watched.page.evaluate(_SWEEP_STATE)


def _check_charts(state: dict[str, Any], view: dict[str, Any]) -> None:
    charts = state["charts"]
    assert state["failed"] == []
    assert set(charts) == {"chart-sweep-batch", "chart-sweep-curves", "chart-sweep-bytes",
                           "chart-sweep-cpu"}
    # p50/p99 against batch size: one series per wire and percentile, the view's values
    batch = charts["chart-sweep-batch"]
    assert batch["x"] == view["batch"]["batch_sizes"] == [2, 8]
    assert batch["labels"] == [s["label"] for s in view["batch"]["series"]]
    assert batch["series"] == [s["values"] for s in view["batch"]["series"]]
    for drawn, series in zip(batch["series"], view["batch"]["series"], strict=True):
        assert sum(v is not None for v in drawn) == series["points"] == 2
    # latency against throughput: each configuration its own (x, y) points
    curves = charts["chart-sweep-curves"]
    expected = [s for s in view["curves"]["series"] if s["points"]]
    assert curves["labels"] == [s["label"] for s in expected] and len(expected) == 4
    for drawn, series in zip(curves["series"], expected, strict=True):
        assert drawn == [series["throughput"], series["latency_ms"]]
        assert len(drawn[0]) == series["points"]
    # a dot in its series' colour at every point; where a later series' dot overlaps it,
    # at least a painted pixel
    dots, strokes = curves["dots"], curves["strokes"]
    for s, series_dots in enumerate(dots):
        for dot in series_dots:
            covered = any(max(abs(a - b) for a, b in zip(dot["at"], other["at"], strict=True))
                          <= 8 for t in range(s + 1, len(dots)) for other in dots[t])
            assert dot["alpha"] == 255
            assert covered or dot["color"] == strokes[s]
    # bars: one per configuration
    bars = view["bars"]
    assert charts["chart-sweep-bytes"]["series"] == [bars["bytes"]]
    assert charts["chart-sweep-bytes"]["points"] == len(bars["labels"]) == 4
    assert charts["chart-sweep-cpu"]["series"] == [bars["cpu_total"], bars["cpu_encode"]]
    for chart_id, chart in charts.items():
        assert chart["painted"] > 1000, f"{chart_id} has nothing drawn"


def test_real_sweep_page_draws_the_sweep(sweep_ui, real_sweep, watched):  # noqa: F811
    document = real_sweep["document"]
    sweep_id = document["sweep_id"]
    with Store(real_sweep["runs"] / "caliper.db") as store:
        stored = {p["run_id"] for p in document["points"] if store.get_run(p["run_id"])}
    view = orjson.loads(orjson.dumps(sweep_view(document, stored_runs=stored)))
    assert len(view["points"]) == 4 and all(p["linked"] for p in view["points"])
    # JSON's p50 and p99 at batch 8 are measured values: the binary encoding's bytes are fewer
    sizes = {row["label"]: row["request_bytes"] for row in view["bars"]["rows"]}
    assert sizes["batch 8 + v2-rest binary"] < sizes["batch 8 + v2-rest json"]
    state = _open(watched, f"http://{sweep_ui}/sweeps/{sweep_id}")
    _check_charts(state, view)
    page = watched.page
    assert page.locator(".recommendation .headline").inner_text() == \
        document["recommendation"]["headline"]
    assert page.locator("table.points tbody tr").count() == 4
    watched.shot("sweep.png")
    # the list leads to the page, and a run id in the table to the run's page
    _open(watched, f"http://{sweep_ui}/sweeps")
    page.locator(f'a[href="/sweeps/{sweep_id}"]').click()
    page.wait_for_url(f"**/sweeps/{sweep_id}")
    first = document["points"][0]["run_id"]
    page.locator(f'table.points a[href="/runs/{first}"]').click()
    page.wait_for_url(f"**/runs/{first}")
    assert page.locator("code.run-id").inner_text() == first


def test_offline_sweep_report_draws_without_the_network(real_sweep, watched):  # noqa: F811
    view = orjson.loads(orjson.dumps(sweep_view(real_sweep["document"])))
    state = _open(watched, real_sweep["report"].as_uri())
    _check_charts(state, view)
    assert all(url.startswith(("file:", "data:")) for url in watched.requests)
    assert watched.page.locator("table.points a").count() == 0  # run ids as plain text
    watched.shot("sweep-report.png")

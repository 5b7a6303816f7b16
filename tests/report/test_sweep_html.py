"""The sweep's HTML report: a golden file from a seeded sweep, self-containment, escaping,
and ``caliper report --sweep``."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import orjson
import pytest

from modelcaliper.cli.main import main
from modelcaliper.report.html import ASSETS, asset_text, render_sweep_page
from modelcaliper.report.sweep import sweep_view
from tests.report.sweep_seeded import (
    AUTO_ID,
    FIXED_ID,
    HOSTILE_MODEL,
    HOSTILE_REASON,
    auto_document,
    fixed_document,
    hostile_document,
    unmet_document,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CALIPER_UPDATE_GOLDEN") == "1"


def _without_assets(page: str) -> str:
    for name in ASSETS:
        page = page.replace(asset_text(name), f"/* asset {name} */")
    return page


def _report(document) -> str:
    return render_sweep_page(sweep_view(document), inline_assets=True, links=False)


def test_sweep_report_matches_its_golden_file():
    page = _without_assets(_report(fixed_document()))
    golden = GOLDEN / "sweep.html"
    if UPDATE:
        golden.write_text(page, encoding="utf-8")
    assert page == golden.read_text(encoding="utf-8"), (
        "sweep.html changed; if on purpose, rerun with CALIPER_UPDATE_GOLDEN=1 and review "
        "the diff")


def test_sweep_report_is_self_contained_with_plain_run_ids():
    page = _report(fixed_document())
    for name in ("uPlot.iife.min.js", "caliper.js", "sweep.js", "caliper.css"):
        assert asset_text(name) in page
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+stylesheet", page)
    assert "href=\"/runs/" not in page and "<nav" not in page
    for point in fixed_document()["points"]:
        assert f"<code>{point['run_id']}</code>" in page


def test_sweep_report_shows_the_recommendation_first_and_every_chart():
    document = fixed_document()
    page = _without_assets(_report(document))
    headline = html.escape(document["recommendation"]["headline"], quote=False)
    assert page.index(headline) < page.index('data-chart="sweep-batch"')
    for chart in ('id="chart-sweep-batch"', 'id="chart-sweep-curves"', 'id="chart-sweep-bytes"',
                  'id="chart-sweep-cpu"'):
        assert page.count(chart) == 1
    assert page.count('data-status="failed"') == 1
    assert "the server process was killed by SIGKILL" in page


def test_unmet_and_capacity_sweeps_render():
    unmet = _without_assets(_report(unmet_document()))
    assert "SLO not met" in unmet and 'class="note closest"' in unmet
    auto = _without_assets(_report(auto_document()))
    assert "Capacity searches" in auto and "bracketed within" in auto
    assert 'id="chart-sweep-batch"' not in auto and "One batch size was swept (25)" in auto


def test_hostile_text_is_escaped():
    page = _without_assets(_report(hostile_document()))
    assert HOSTILE_MODEL not in page and HOSTILE_REASON not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page
    data = page.split('id="caliper-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "\\u003cscript\\u003e" in data
    # the data block and the three inlined scripts
    assert page.count("<script") == 4


def _store_with_sweeps(tmp_path: Path) -> Path:
    from modelcaliper.store import Store

    runs = tmp_path / "runs"
    for document in (fixed_document(), auto_document()):
        folder = runs / "sweeps" / document["sweep_id"]
        folder.mkdir(parents=True)
        (folder / "sweep.json").write_bytes(orjson.dumps(document))
    Store(runs / "caliper.db").close()
    return runs


def test_cli_writes_a_sweep_report_by_id_and_its_view_as_json(tmp_path, capsys):
    runs = _store_with_sweeps(tmp_path)
    out = tmp_path / "sweep.html"
    code = main(["report", "--sweep", FIXED_ID, "--store", str(runs / "caliper.db"),
                 "--html", str(out), "--json", str(tmp_path / "sweep.json")])
    assert code == 0
    assert f"sweep {FIXED_ID}, 12 runs" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert html.escape(fixed_document()["recommendation"]["headline"], quote=False) in page
    view = orjson.loads((tmp_path / "sweep.json").read_bytes())
    assert view == orjson.loads(orjson.dumps(sweep_view(fixed_document())))
    # by folder, without a store
    code = main(["report", "--sweep", str(runs / "sweeps" / AUTO_ID), "--html", str(out)])
    assert code == 0 and "Capacity searches" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("argv, message", [
    # neither runs nor a sweep
    (["report", "--html", "x.html"], "needs a RUN (id or folder) or --sweep SWEEP"),
    # both
    (["report", "RUN", "--sweep", FIXED_ID, "--html", "x.html"], "give runs or --sweep, not both"),
    # an unknown sweep id
    (["report", "--sweep", "20260101-000000-sweep-none-000000", "--html", "x.html"],
     "was not found"),
])
def test_cli_sweep_errors_exit_2(tmp_path, capsys, argv, message):
    runs = _store_with_sweeps(tmp_path)
    code = main([*argv, "--store", str(runs / "caliper.db")])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert not (tmp_path / "x.html").exists()

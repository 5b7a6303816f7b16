"""The HTML report: golden files from seeded runs, self-containment and escaping."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from modelcaliper.report.compare import compare_view
from modelcaliper.report.data import run_view
from modelcaliper.report.html import ASSETS, asset_text, json_for_script, render_report
from tests.report.seeded import BASELINE, FASTER, HOSTILE, HOSTILE_ERROR, HOSTILE_MODEL

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CALIPER_UPDATE_GOLDEN") == "1"


def _without_assets(page: str) -> str:
    """The page with each inlined asset replaced by its name (they are checked separately)."""
    for name in ASSETS:
        page = page.replace(asset_text(name), f"/* asset {name} */")
    return page


def _report(seeded_runs, specs) -> str:
    pairs = [seeded_runs[s.run_id] for s in specs]
    views = [run_view(folder, stored) for folder, stored in pairs]
    return render_report(views, compare_view(pairs) if len(pairs) > 1 else None)


@pytest.mark.parametrize("name, specs", [
    ("run.html", (BASELINE,)),              # one run: the Run view
    ("compare.html", (BASELINE, FASTER)),   # two runs: Compare, then both Run views
])
def test_report_matches_its_golden_file(seeded_runs, name, specs):
    page = _without_assets(_report(seeded_runs, specs))
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(page, encoding="utf-8")
    assert page == golden.read_text(encoding="utf-8"), (
        f"{name} changed; if on purpose, rerun with CALIPER_UPDATE_GOLDEN=1 and review the diff")


def test_report_is_self_contained(seeded_runs):
    page = _report(seeded_runs, (BASELINE, FASTER))
    assert asset_text("uPlot.iife.min.js") in page and asset_text("caliper.js") in page
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+stylesheet", page)
    assert "cdn" not in _without_assets(page).lower()


def test_hostile_names_and_errors_are_escaped(seeded_runs):
    page = _without_assets(_report(seeded_runs, (BASELINE, HOSTILE)))
    assert HOSTILE_MODEL not in page and HOSTILE_ERROR not in page
    assert "<b>9</b>" not in page and "<i>tag</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    assert "&lt;img src=x onerror=" in page
    # the embedded JSON cannot close its script element
    data = page.split('id="caliper-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and "\\u003cscript\\u003e" in data
    # the only script elements are the data block and the two inlined scripts
    assert page.count("<script") == 3


@pytest.mark.parametrize("value, expected", [
    ("</script>", '"\\u003c/script\\u003e"'),       # cannot end the element
    ("a&b", '"a\\u0026b"'),                          # no entity games
    ("line\u2028sep", '"line\\u2028sep"'),           # JS line separators escaped
    ({"x": float("nan")}, '{"x":null}'),             # NaN is not JSON
])
def test_json_for_script(value, expected):
    assert json_for_script(value) == expected

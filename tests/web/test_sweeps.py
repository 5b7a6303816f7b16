"""The sweeps in the web UI: the list, the Sweep page and their API, against the real app."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from modelcaliper import __version__
from modelcaliper.report.sweep import sweep_view
from modelcaliper.web.app import create_app
from modelcaliper.web.openapi import openapi_document
from tests.report.seeded import BASELINE
from tests.report.sweep_seeded import (
    AUTO_ID,
    FIXED_ID,
    HOSTILE_ID,
    HOSTILE_MODEL,
    all_documents,
    fixed_document,
)
from tests.web.server import fetch, serve

BROKEN_ID = "20261127-141500-sweep-broken-eeeeee"


def write_sweeps(folder: Path) -> Path:
    """The seeded sweeps under ``folder`` (the fixed one's first point is BASELINE's run),
    and one whose sweep.json is damaged."""
    for sweep_id, document in all_documents().items():
        if sweep_id == FIXED_ID:
            document["points"][0]["run_id"] = BASELINE.run_id
        (folder / sweep_id).mkdir(parents=True)
        (folder / sweep_id / "sweep.json").write_bytes(orjson.dumps(document))
    (folder / BROKEN_ID).mkdir()
    (folder / BROKEN_ID / "sweep.json").write_text("{not json", encoding="utf-8")
    (folder / "not-a-sweep").mkdir()  # a folder without sweep.json is not listed
    return folder


@pytest.fixture(scope="module")
def sweeps_ui(seeded_db, tmp_path_factory) -> Iterator[str]:
    """The UI over the seeded store and the seeded sweeps."""
    folder = write_sweeps(tmp_path_factory.mktemp("sweeps"))
    with serve(create_app(seeded_db, sweeps_dir=folder)) as address:
        yield address


def test_sweep_list_page_and_api(sweeps_ui):
    answer = fetch(sweeps_ui, "/api/sweeps")
    assert answer.status == 200
    listing = answer.json()
    ids = [row["sweep_id"] for row in listing["sweeps"]]
    assert ids == sorted([*all_documents(), BROKEN_ID], reverse=True)  # newest first
    broken = next(row for row in listing["sweeps"] if row["sweep_id"] == BROKEN_ID)
    assert not broken["readable"] and "cannot be read" in broken["error"]
    fixed = next(row for row in listing["sweeps"] if row["sweep_id"] == FIXED_ID)
    assert fixed["met"] and fixed["runs"] == 12
    page = fetch(sweeps_ui, "/sweeps")
    assert page.status == 200
    for sweep_id in ids:
        assert f'href="/sweeps/{sweep_id}"' in page.text
    assert html.escape(HOSTILE_MODEL, quote=False) in page.text
    assert HOSTILE_MODEL not in page.text
    assert '<a href="/sweeps">sweeps</a>' in page.text  # in the navigation


def test_sweep_page_links_the_runs_the_store_has(sweeps_ui):
    page = fetch(sweeps_ui, f"/sweeps/{FIXED_ID}")
    assert page.status == 200
    assert '<script src="/assets/sweep.js"></script>' in page.text
    # the point whose run is in the store links to its page; the others are plain ids
    assert f'<a href="/runs/{BASELINE.run_id}"><code>{BASELINE.run_id}</code></a>' in page.text
    assert page.text.split("<main>", 1)[1].count('<a href="/runs/') == 1
    view = fetch(sweeps_ui, f"/api/sweeps/{FIXED_ID}").json()
    assert [p["linked"] for p in view["points"]] == [True] + [False] * 11
    document = fixed_document()
    document["points"][0]["run_id"] = BASELINE.run_id
    expected = sweep_view(document, stored_runs={BASELINE.run_id})
    assert view == orjson.loads(orjson.dumps(expected))
    assert fetch(sweeps_ui, f"/sweeps/{AUTO_ID}").status == 200


def test_hostile_sweep_page_is_escaped(sweeps_ui):
    page = fetch(sweeps_ui, f"/sweeps/{HOSTILE_ID}")
    assert page.status == 200 and HOSTILE_MODEL not in page.text
    assert "<img src=x" not in page.text


@pytest.mark.parametrize("path, status, message", [
    # no such sweep
    ("/api/sweeps/20200101-000000-sweep-none-000000", 404, "no sweep '20200101-000000"),
    # not a sweep id at all: never a path outside the folder
    ("/api/sweeps/..", 404, "no sweep '..'"),
    ("/api/sweeps/.hidden", 404, "no sweep '.hidden'"),
    ("/api/sweeps/%2e%2e%2fcaliper.db", 404, ""),
    # a damaged sweep.json
    (f"/api/sweeps/{BROKEN_ID}", 400, "is not valid JSON"),
    # a folder without sweep.json
    ("/api/sweeps/not-a-sweep", 404, "no sweep 'not-a-sweep'"),
])
def test_bad_sweep_ids_are_clear_errors(sweeps_ui, path, status, message):
    answer = fetch(sweeps_ui, path)
    assert answer.status == status
    assert message in answer.json()["error"]
    page = fetch(sweeps_ui, path.replace("/api", "", 1))
    assert page.status == status and "<h1>" in page.text


def test_default_sweeps_folder_is_next_to_the_database(tmp_path):
    from modelcaliper.store import Store

    Store(tmp_path / "caliper.db").close()
    write_sweeps(tmp_path / "sweeps")
    with serve(create_app(tmp_path / "caliper.db")) as address:
        assert fetch(address, "/api/sweeps").json()["total"] == len(all_documents()) + 1
    empty = tmp_path / "elsewhere"
    with serve(create_app(tmp_path / "caliper.db", sweeps_dir=empty)) as address:
        listing = fetch(address, "/api/sweeps").json()
        assert listing == {"sweeps": [], "total": 0, "sweeps_dir": str(empty)}
        assert "No sweeps yet" in fetch(address, "/sweeps").text


def test_openapi_describes_the_sweep_paths():
    document = openapi_document(__version__)
    assert {"/api/sweeps", "/api/sweeps/{sweep_id}"} <= set(document["paths"])
    assert {"SweepList", "SweepRow", "SweepView"} <= set(document["components"]["schemas"])
    get = document["paths"]["/api/sweeps/{sweep_id}"]["get"]
    assert {"200", "400", "404"} <= set(get["responses"])

"""``caliper report``: runs by id or folder, HTML and JSON out, one-line errors; its speed."""

from __future__ import annotations

import time

import orjson
import pytest

from modelcaliper.cli.main import main
from modelcaliper.report.data import run_view
from modelcaliper.report.html import render_report
from tests.report.seeded import BASELINE, FASTER, Seeded, write_seeded_run


def test_report_of_one_run_by_id(seeded_db, tmp_path, capsys):
    out = tmp_path / "run.html"
    assert main(["report", BASELINE.run_id, "--store", str(seeded_db), "--html", str(out)]) == 0
    page = out.read_text("utf-8")
    assert page.startswith("<!doctype html>") and BASELINE.run_id in page
    assert "wrote" in capsys.readouterr().out


def test_report_of_two_runs_by_folder_compares_them(seeded_db, tmp_path):
    out = tmp_path / "cmp.json"
    folders = [str(seeded_db.parent / s.run_id) for s in (BASELINE, FASTER)]
    assert main(["report", *folders, "--store", str(seeded_db), "--json", str(out)]) == 0
    data = orjson.loads(out.read_bytes())
    assert [v["run"]["run_id"] for v in data["views"]] == [BASELINE.run_id, FASTER.run_id]
    assert data["compare"]["comparisons"][0]["candidate"] == FASTER.run_id
    assert data["views"][0]["run"]["tags"] == ["nightly"]  # the index row was found too


@pytest.mark.parametrize("argv, message", [
    (["report", "20990101-000000-nothing-000000", "--html", "x.html"], "was not found"),
    (["report", "../etc", "--html", "x.html"], "is not a run folder"),
    (["report", BASELINE.run_id], "needs --html FILE or --json FILE"),
])
def test_report_errors_are_one_line_with_exit_2(seeded_db, tmp_path, capsys, argv, message):
    assert main([*argv, "--store", str(seeded_db)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_a_run_of_a_million_requests_renders_within_a_second(tmp_path):
    folder = write_seeded_run(tmp_path, Seeded("20261130-000000-big-000000", requests=1_000_000,
                                               rate_per_s=1000.0, seed=9))
    timings = []
    for _ in range(3):  # the best of three: the machine is shared
        started = time.perf_counter()
        page = render_report([run_view(folder.path)])
        timings.append(time.perf_counter() - started)
    assert len(page) < 1_000_000
    assert min(timings) <= 1.0, f"rendering took {timings}"

"""The Run view's op profile: group shares, per-batch-size profiles, downloadable files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelcaliper.report.data import profile_files, run_view
from modelcaliper.report.html import render_run_page
from modelcaliper.web.files import zip_folder
from tests.report.seeded import Seeded, write_seeded_run

GROUPS = [{"group": "transform", "self_us": 880.0, "share": 0.88, "ops": 40},
          {"group": "model", "self_us": 120.0, "share": 0.12, "ops": 9}]


def _profile(folder: Path, *, batch_size: int | None, predictions: int | None,
             total_us: float, trace: str | None, groups: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ops = [{"name": f"transform/map/while_{i}", "op_type": "While", "group": "transform",
            "calls": 10, "self_us": total_us * s, "mean_us": 1.0, "share": s}
           for i, s in enumerate((0.5, 0.3))]
    (folder / "profile.json").write_bytes(orjson.dumps({
        "format": "modelcaliper.profile/1", "status": "ok", "runtime": "tensorflow",
        "label": "under load" if batch_size is None else f"batch {batch_size}",
        "batch_size": batch_size, "predictions": predictions, "window_s": 3.0,
        "trace_path": trace, "summary": {"total_us": total_us, "groups": groups},
        "ops": ops}))


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    folder = write_seeded_run(tmp_path, Seeded("20261127-050000-ranker-dddddd", profile=False))
    path = Path(folder.path)
    profile = path / "profile"
    (profile / "trace.json").parent.mkdir(parents=True, exist_ok=True)
    (profile / "trace.json").write_text('{"traceEvents": []}')
    xplane = profile / "plugins" / "profile" / "2026_11_27_05_00_00"
    xplane.mkdir(parents=True)
    (xplane / "host.xplane.pb").write_bytes(b"\x0a\x00")
    _profile(profile, batch_size=None, predictions=None, total_us=1000.0,
             trace=str(profile / "trace.json"), groups=GROUPS)
    _profile(profile / "batch_25", batch_size=25, predictions=20, total_us=4000.0,
             trace=None, groups=GROUPS)
    _profile(profile / "batch_5", batch_size=5, predictions=20, total_us=1000.0,
             trace=None, groups=GROUPS[::-1])
    return path


def test_view_has_groups_files_and_batch_sizes_in_order(run_folder: Path) -> None:
    profile = run_view(run_folder, None)["profile"]
    assert profile["status"] == "ok" and profile["batch_size"] == 25  # the run's batch size
    assert [g["group"] for g in profile["groups"]] == ["transform", "model"]
    assert profile["files"] == [{"kind": "tensorboard", "path": "profile"},
                                {"kind": "trace", "path": "profile/trace.json"}]
    rows = profile["by_batch"]
    assert [r["batch_size"] for r in rows] == [5, 25]
    # 1000 µs over 20 predictions of 5 rows; 4000 µs over 20 predictions of 25 rows
    assert rows[0]["per_call_us"] == pytest.approx(50.0)
    assert rows[0]["per_row_us"] == pytest.approx(10.0)
    assert rows[1]["per_call_us"] == pytest.approx(200.0)
    assert rows[1]["per_row_us"] == pytest.approx(8.0)
    assert rows[1]["top_op"]["name"] == "transform/map/while_0"


def test_trace_stored_outside_the_folder_is_not_offered(run_folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    _profile(run_folder / "profile", batch_size=None, predictions=None, total_us=1.0,
             trace=str(elsewhere), groups=GROUPS)
    assert "trace" not in profile_files(run_folder)
    (run_folder / "profile" / "trace.json").unlink()
    os.symlink(elsewhere, run_folder / "profile" / "trace.json")
    _profile(run_folder / "profile", batch_size=None, predictions=None, total_us=1.0,
             trace=str(run_folder / "profile" / "trace.json"), groups=GROUPS)
    assert "trace" not in profile_files(run_folder)  # the link resolves outside


def test_page_draws_the_group_bar_and_links_the_downloads(run_folder: Path) -> None:
    page = render_run_page(run_view(run_folder, None))
    assert 'class="seg group-transform" style="width: 88.00%' in page
    assert "/runs/20261127-050000-ranker-dddddd/profile/trace.json" in page
    assert "/runs/20261127-050000-ranker-dddddd/profile/tensorboard.zip" in page
    assert "Op time per batch size" in page


def test_zip_holds_the_log_directory_without_symlinks(run_folder: Path, tmp_path: Path) -> None:
    import io
    import zipfile

    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    os.symlink(secret, run_folder / "profile" / "plugins" / "link.txt")
    names = zipfile.ZipFile(io.BytesIO(zip_folder(run_folder / "profile", "p"))).namelist()
    assert "p/plugins/profile/2026_11_27_05_00_00/host.xplane.pb" in names
    assert "p/trace.json" in names and "p/batch_5/profile.json" in names
    assert not any(name.endswith("link.txt") for name in names)

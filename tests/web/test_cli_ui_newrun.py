"""``caliper ui --models-dir/--data-dir/--concurrent-runs``: checked before serving; with model
roots a missing run database is created, since the New run page writes runs into it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelcaliper.cli.main import main
from tests.web.conftest import TOKEN
from tests.web.newrun_env import make_roots


@pytest.mark.parametrize("extra, message", [
    (["--data-dir", "."], "--data-dir needs --models-dir too"),        # data without models
    (["--models-dir", "no-such-dir"], "--models-dir no-such-dir is not a directory"),
    (["--models-dir", ".", "--data-dir", "nope"], "--data-dir nope is not a directory"),
    (["--models-dir", ".", "--concurrent-runs", "0"], "--concurrent-runs must be ≥ 1, got 0"),
])
def test_bad_new_run_options_are_usage_errors(tmp_path, capsys, extra, message):
    database = tmp_path / "runs" / "caliper.db"
    assert main(["ui", "--store", str(database), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not database.exists()  # nothing created for a refused command


def test_model_roots_create_the_database_and_turn_the_page_on(tmp_path):
    roots = make_roots(tmp_path)
    database = tmp_path / "fresh" / "caliper.db"
    command = [sys.executable, "-m", "modelcaliper.cli.main", "ui", "--store", str(database),
               "--port", "0", "--models-dir", str(roots.models), "--data-dir", str(roots.data)]
    env = {**os.environ, "CALIPER_UI_TOKEN": TOKEN}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as process:
        try:
            line = process.stdout.readline()  # printed once the app is built
            assert "new runs at /runs/new, 1 at a time" in line and "(token required)" in line
            assert database.is_file()
        finally:
            process.terminate()
            process.wait(timeout=30)

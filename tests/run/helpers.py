"""Helpers of the ``caliper run`` tests: subprocess runs, run folders, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def caliper_process(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    """``caliper run ...`` as its own process, stderr piped line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelcaliper.cli.main", "run", *argv],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)})


def wait_for_line(process: subprocess.Popen[str], starts: str, timeout_s: float = 120.0,
                  seen: list[str] | None = None) -> str:
    """The first stderr line starting with ``starts`` (every line read goes to ``seen``)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"caliper ended before printing {starts!r}: {seen}")
        if seen is not None:
            seen.append(line)
        if line.startswith(starts):
            return line
    raise AssertionError(f"no line starting with {starts!r} within {timeout_s:g}s")


def only_folder(runs: Path) -> Path:
    """The one run folder under ``runs``."""
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def read_json(path: Path) -> dict:
    """A JSON file as a dict."""
    return orjson.loads(path.read_bytes())


def gone(pid: int, timeout_s: float = 20.0) -> bool:
    """Whether process ``pid`` no longer runs (or is a zombie) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def no_run_left(runs: Path) -> bool:
    """Whether ``runs`` holds no run folder (the database file may exist)."""
    return not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()]

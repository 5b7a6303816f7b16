"""Where a run ran: host facts, tool and library versions, the model's git commit, the seeds.

``collect_environment`` returns one JSON-ready dict, stored with every run so two runs can be
compared knowing whether the machine or the libraries changed between them:

    collected_at   ISO 8601 UTC
    host           hostname, cpu_model, cpu_count, cpus_usable (this process's affinity),
                   memory_bytes, load_average_1m, os, os_release, kernel, machine, platform
    python         version, implementation, executable
    versions       {distribution: version or null} for modelcaliper and the libraries it uses
    model          {path, git} — git is {root, commit, tracked, dirty} when the model sits in a git
                   work tree, else null; the whole block is null without a model path
    seeds          {name: seed} as given (schedule, data sample, ...)

Versions come from installed distribution metadata, never from importing the package: asking
for TensorFlow's version must not cost the seconds (and memory) of importing it. A package
already imported but without metadata (a source checkout) answers with its ``__version__``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "collect_environment", "git_facts", "library_versions"]

LIBRARIES: dict[str, tuple[str, ...]] = {
    "modelcaliper": ("modelcaliper",),
    "numpy": ("numpy",),
    "pyarrow": ("pyarrow",),
    "grpcio": ("grpcio",),
    "protobuf": ("protobuf",),
    "orjson": ("orjson",),
    "zstandard": ("zstandard",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
    "keras": ("keras",),
    "uvicorn": ("uvicorn",),
}
"""Reported name → distributions that provide it, tried in order."""

_MODULES = {"onnxruntime": "onnxruntime", "tensorflow": "tensorflow", "keras": "keras",
            "modelcaliper": "modelcaliper", "protobuf": "google.protobuf", "grpcio": "grpc"}
_GIT_TIMEOUT_S = 5.0


def library_versions() -> dict[str, str | None]:
    """The installed version of every library in ``LIBRARIES`` (null when not installed)."""
    out: dict[str, str | None] = {}
    for name, distributions in LIBRARIES.items():
        out[name] = None
        for distribution in distributions:
            try:
                out[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
        if out[name] is None:
            # Only a module that is already loaded is asked: importing one here could take
            # seconds (TensorFlow) for a fact the metadata did not have.
            module = sys.modules.get(_MODULES.get(name, name))
            version = getattr(module, "__version__", None)
            out[name] = str(version) if version is not None else None
    return out


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                                  check=False)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _host() -> dict[str, Any]:
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load_1m: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):
        load_1m = None
    return {"hostname": socket.gethostname(), "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "memory_bytes": _memory_bytes(), "load_average_1m": load_1m,
            "os": platform.system(), "os_release": platform.release(),
            "kernel": platform.version(), "machine": platform.machine(),
            "platform": platform.platform()}


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_facts(path: str | Path) -> dict[str, Any] | None:
    """``{root, commit, tracked, dirty}`` of the git work tree holding ``path``, or None."""
    target = Path(path).resolve()
    directory = target if target.is_dir() else target.parent
    if not directory.is_dir():
        return None
    root = _git(["rev-parse", "--show-toplevel"], directory)
    commit = _git(["rev-parse", "HEAD"], directory)
    if not root or not commit:
        return None
    # A model in an ignored folder (generated artifacts) is not described by the commit at
    # all: ``tracked`` says so. Dirty means its files differ from the commit (untracked too).
    tracked = _git(["ls-files", "--", str(target)], directory)
    status = _git(["status", "--porcelain", "--", str(target)], directory)
    return {"root": root, "commit": commit, "tracked": None if tracked is None else bool(tracked),
            "dirty": None if status is None else bool(status)}


def collect_environment(*, seeds: Mapping[str, int | None] | None = None,
                        model_path: str | Path | None = None) -> dict[str, Any]:
    """Host facts, library versions, the model's git commit and the seeds, JSON-ready."""
    model = None
    if model_path is not None:
        model = {"path": str(model_path), "git": git_facts(model_path)}
    return {
        "collected_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "host": _host(),
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "versions": library_versions(),
        "model": model,
        "seeds": dict(seeds or {}),
    }

"""Sweep speed: the 12-point demo sweep with early stopping against the same sweep without it.

The demo's ranking model (version 2, vectorized transform; built or reused under
``runs/demo/artifacts/quick``, the same artifacts ``caliper demo --quick`` uses) is swept over
batch 5/25 × three encodings (TF Serving gRPC protobuf, v2 REST JSON, v2 REST binary) × two
compressions (none, gzip) at 40 requests/s with ``p99<250ms`` and ``error_rate<0.1%``: 12
points, each at most 30 s. The baseline is the same sweep with ``--no-early-stop`` (every
point runs its whole 30 s). Printed: both wall times, their ratio, the load time early
stopping saved, and the recommendation table of the early-stopped sweep.

Run: ``.venv/bin/python bench/sweep_speed.py [--max-duration 30s] [--skip-baseline]``
(about 3 minutes with early stopping and 7 without on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AXES = ["--batch-size", "5,25", "--protocol", "tfserving-grpc,v2-rest",
        "--encoding", "json,binary", "--compression", "none,gzip", "--rps", "40",
        "--slo", "p99<250ms", "--slo", "error_rate<0.1%"]


def artifacts() -> tuple[Path, Path]:
    """The demo's model base path and training data (built once, then reused)."""
    from modelcaliper.demo.story import DemoSettings, prepare_artifacts

    built = prepare_artifacts(ROOT / "runs" / "demo" / "artifacts" / "quick",
                              DemoSettings.quick(), say=lambda text: print(text, flush=True))
    return built.base_path, built.data_path


def sweep(model: Path, data: Path, runs: Path, max_duration: str,
          early: bool) -> tuple[float, dict]:
    """One ``caliper sweep`` in a child process: its wall time and its sweep.json."""
    cmd = [sys.executable, "-m", "modelcaliper.cli.main", "sweep", str(model),
           "--model-version", "2", "--data", str(data), *AXES, "--duration", max_duration,
           "--runs-dir", str(runs), "--sweeps-dir", str(runs / "sweeps")]
    if not early:
        cmd.append("--no-early-stop")
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600,
                          env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    wall_s = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"sweep failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    documents = sorted((runs / "sweeps").glob("*/sweep.json"))
    if early:
        print(done.stdout[-4000:])
    return wall_s, json.loads(documents[-1].read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-duration", default="30s", help="longest a point runs (30s)")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="only the early-stopped sweep (no ratio)")
    args = parser.parse_args()
    model, data = artifacts()
    with tempfile.TemporaryDirectory(prefix="caliper-sweep-bench-") as tmp:
        early_s, early_doc = sweep(model, data, Path(tmp) / "early", args.max_duration, True)
        timing = early_doc.get("timing") or {}
        points = early_doc.get("points") or []
        print(f"early stopping : {len(points)} points in {early_s:.0f} s wall; load measured "
              f"{timing.get('measured_load_s', 0):.0f} s of {timing.get('max_load_s', 0):.0f} s "
              f"planned; {timing.get('stopped_early', 0)} points stopped early")
        if args.skip_baseline:
            return 0
        full_s, full_doc = sweep(model, data, Path(tmp) / "full", args.max_duration, False)
        full_points = full_doc.get("points") or []
        print(f"no early stop  : {len(full_points)} points in {full_s:.0f} s wall")
        print(f"ratio          : early-stopped sweep takes {early_s / full_s:.2f}× the time "
              f"of the full one (saved {full_s - early_s:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

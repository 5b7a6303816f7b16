"""Run page render time: a stored run of 1,000,000 requests against one of 1,000.

Both runs are seeded synthetic run folders with every artifact a real run writes (Parquet
records, histograms, per-second intervals, server metrics, op profile), indexed in one store
and served by the real web app (uvicorn on 127.0.0.1). Measured, median of ``--repeats``: the
Run view built from the folder (``report.data.run_view``), the page rendered from it, and the
whole ``GET /runs/{id}`` through the app. The page reads pre-aggregated data only, so the
1M-request page should cost about what the 1k one does; the ratio says how close it is.

Run: ``.venv/bin/python bench/report_render.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.report.seeded import Seeded, write_seeded_run  # noqa: E402
from tests.web.server import fetch, serve  # noqa: E402

from modelcaliper.report.data import run_view  # noqa: E402
from modelcaliper.report.html import render_run_page  # noqa: E402
from modelcaliper.store import Store  # noqa: E402
from modelcaliper.web.app import create_app  # noqa: E402


def median_s(work, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = {"1k": 1_000, "1M": 1_000_000}
    with tempfile.TemporaryDirectory(prefix="caliper-render-") as tmp:
        root = Path(tmp)
        folders = {}
        with Store(root / "caliper.db") as store:
            for label, count in sizes.items():
                run_id = f"20261127-000000-render{label.lower()}-000000"
                print(f"seeding {count:,} requests ...", flush=True)
                folder = write_seeded_run(root, Seeded(run_id, requests=count,
                                                       rate_per_s=max(count / 600, 50.0)))
                store.save_run(folder)
                folders[label] = (run_id, Path(folder.path))
        results = {}
        with serve(create_app(root / "caliper.db")) as address:
            for label, (run_id, folder) in folders.items():
                view = run_view(folder, None)
                results[label] = {
                    "view": median_s(lambda folder=folder: run_view(folder, None), args.repeats),
                    "render": median_s(lambda view=view: render_run_page(view), args.repeats),
                    "http": median_s(lambda run_id=run_id: fetch(address, f"/runs/{run_id}"),
                                     args.repeats),
                    "kib": len(fetch(address, f"/runs/{run_id}").body) / 1024}
    print(f"{'run':>4}  {'view s':>7}  {'render s':>8}  {'GET page s':>10}  {'page KiB':>8}")
    for label, r in results.items():
        print(f"{label:>4}  {r['view']:7.3f}  {r['render']:8.3f}  {r['http']:10.3f}  "
              f"{r['kib']:8.0f}")
    print(f"1M / 1k: GET page {results['1M']['http'] / results['1k']['http']:.2f}×, "
          f"view {results['1M']['view'] / results['1k']['view']:.2f}×; the 1M page in "
          f"{results['1M']['http']:.2f} s (goal ≤ 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

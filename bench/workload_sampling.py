"""Sampling speed and memory: 100,000 rows from a 5,000,000-row, 300-column Parquet dataset.

The dataset (ten files of 500,000 rows of 300 float32 features plus an int64 ``row`` column,
row groups of 62,500 rows, snappy, about 6 GB) is generated once into a cache directory
(``--cache``, default ``/tmp/modelcaliper-bench-cache``) and reused. Every measurement runs in
a fresh subprocess that reports its wall time and peak resident memory (VmHWM).

Cases:

* ``sample``: ``select_rows(Selection(sample=100_000))`` with every column;
* ``sample+where``: the same with ``--where "f000 > 0.5"`` (a first pass reads one column);
* ``sample, 8 columns``: the sample restricted to the columns a small model would need;
* ``baseline``: reading one 500,000-row file whole with ``pyarrow.parquet.read_table``.
  The whole dataset (6 GB of float32) does not fit the 1 GB budget, so the baseline is the
  500,000-row file and is scaled by 10 to estimate a whole read; the ratio printed for each
  case is (case time) / (10 x baseline time).

Goals: ``sample`` in ≤ 10 s with ≤ 1 GB peak RSS. Also printed: CPU seconds (user + system,
which other load on the machine inflates less than wall time), µs per source row scanned and
per selected row.

Run: ``.venv/bin/python bench/workload_sampling.py [--cache DIR] [--quick]`` (``--quick`` uses
a 1,000,000-row dataset for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROWS_PER_FILE = 500_000
ROW_GROUP_ROWS = 62_500
FEATURES = 300
SAMPLE_ROWS = 100_000


def _generate(folder: Path, files: int) -> float:
    """Write the dataset (column-major float32 blocks, one row group at a time)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"f{i:03d}" for i in range(FEATURES)]
    schema = pa.schema([("row", pa.int64())] + [(n, pa.float32()) for n in names])
    rng = np.random.default_rng(0)
    for index in range(files):
        partial = folder / f".part-{index:02d}.parquet"
        with pq.ParquetWriter(partial, schema, use_dictionary=False) as writer:
            for start in range(0, ROWS_PER_FILE, ROW_GROUP_ROWS):
                block = rng.random((FEATURES, ROW_GROUP_ROWS), dtype=np.float32)
                first = index * ROWS_PER_FILE + start
                arrays = [pa.array(np.arange(first, first + ROW_GROUP_ROWS, dtype=np.int64))]
                arrays += [pa.array(block[i]) for i in range(FEATURES)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema),
                                   row_group_size=ROW_GROUP_ROWS)
        partial.rename(folder / f"part-{index:02d}.parquet")
    (folder / "_COMPLETE").write_text("ok")
    return time.perf_counter() - started


def _child(case: str, folder: str) -> None:
    """Run one case in this process and print its figures as JSON."""
    started = time.perf_counter()
    rows = 0
    if case == "baseline":
        import pyarrow.parquet as pq

        rows = pq.read_table(Path(folder) / "part-00.parquet").num_rows
        scanned = rows
    else:
        from modelcaliper.workload.selection import Selection, select_rows

        options: dict = {"sample": SAMPLE_ROWS, "seed": 1}
        columns = None
        if case == "sample+where":
            options["where"] = "f000 > 0.5"
        if case == "sample, 8 columns":
            columns = [f"f{i:03d}" for i in range(8)]
        picked = select_rows(folder, Selection(**options), columns=columns)
        rows, scanned = picked.num_rows, picked.source_rows
    wall_s = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(json.dumps({"wall_s": wall_s, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "hwm_mb": hwm_kb / 1024, "rows": rows, "scanned": scanned}))


def _measure(case: str, folder: Path, repeat: int) -> dict:
    """The run of median wall time among ``repeat`` fresh subprocesses (and the worst peak)."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", case, str(folder)],
                             check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["wall_s"])
    middle = dict(runs[len(runs) // 2])
    middle["hwm_mb"] = max(r["hwm_mb"] for r in runs)
    middle["min_s"], middle["max_s"] = runs[0]["wall_s"], runs[-1]["wall_s"]
    return middle


def main() -> int:
    """Generate the dataset if needed, run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.environ.get("MODELCALIPER_BENCH_CACHE",
                                                          "/tmp/modelcaliper-bench-cache"))
    parser.add_argument("--quick", action="store_true", help="a 1,000,000-row dataset")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    files = 2 if args.quick else 10
    folder = Path(args.cache) / f"sampling-{files * ROWS_PER_FILE}x{FEATURES}"
    if not (folder / "_COMPLETE").exists():
        print(f"generating {files * ROWS_PER_FILE:,} rows x {FEATURES} float32 into {folder} ...",
              flush=True)
        print(f"  generated in {_generate(folder, files):.1f} s", flush=True)
    size_gb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e9
    print(f"dataset: {files * ROWS_PER_FILE:,} rows x {FEATURES + 1} columns, {size_gb:.1f} GB "
          f"on disk, row groups of {ROW_GROUP_ROWS:,} rows")
    baseline = _measure("baseline", folder, args.repeat)
    whole_s = baseline["wall_s"] * files
    print(f"baseline: pyarrow read_table of one {ROWS_PER_FILE:,}-row file: "
          f"{baseline['wall_s']:.2f} s (runs {baseline['min_s']:.2f}-{baseline['max_s']:.2f}, "
          f"{baseline['cpu_s']:.1f} s CPU), "
          f"peak RSS {baseline['hwm_mb']:.0f} MB; x{files} "
          f"= {whole_s:.1f} s estimated for a whole read (which would need "
          f"~{files * ROWS_PER_FILE * FEATURES * 4 / 1e9:.0f} GB of memory)")
    print(f"median of {args.repeat} runs each; peak RSS is the largest of the runs")
    print(f"{'case':<20} {'rows':>8} {'time s':>7} {'min-max s':>11} {'cpu s':>6} {'peak MB':>8} "
          f"{'µs/scanned row':>15} {'µs/selected row':>16} {'vs whole read':>14}")
    for case in ("sample", "sample+where", "sample, 8 columns"):
        got = _measure(case, folder, args.repeat)
        spread = f"{got['min_s']:.1f}-{got['max_s']:.1f}"
        print(f"{case:<20} {got['rows']:>8,} {got['wall_s']:>7.2f} {spread:>11} "
              f"{got['cpu_s']:>6.1f} {got['hwm_mb']:>8.0f} "
              f"{got['wall_s'] * 1e6 / got['scanned']:>15.3f} "
              f"{got['wall_s'] * 1e6 / got['rows']:>16.1f} {got['wall_s'] / whole_s:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

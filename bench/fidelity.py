"""Load-engine fidelity: reported latency percentiles over the true ones, as ratios.

Loads the ground-truth server (``modelcaliper.testing``, a child process) with the open-loop
driver and the HTTP transport at 200 req/s constant, and prints reported / true for:

1. ``zero``: service time 0 — the loopback overhead every request pays (the reported median);
2. ``lognormal``: median 5 ms, σ 0.5 — p50, p90, p99 over the true service-time percentiles
   (arrival → answer, as the server recorded each request) plus the overhead, and over the
   law's exact quantiles plus the overhead (the server's timers fire a little late, so the
   applied times sit slightly above the law);
3. ``stalls``: 5 ms service, the server frozen 300 ms every 3 s — the open-loop p99 over the
   truth and over the analysis (270 ms + base; see tests/load/test_fidelity.py), and a
   closed-loop client's p99 (one request at a time, timed from the actual send) over the
   truth: the coordinated-omission error, far below 1.

A ratio of 1.00 is a perfect report; the tests require max(2 %, 0.5 ms) against the truth.

Run: ``.venv/bin/python bench/fidelity.py [--seconds 9]``
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from modelcaliper.testing import GroundTruthProcess, ServiceTime
from modelcaliper.testing.fidelity import closed_loop, open_loop, within

RATE_PER_S = 200.0
QUANTILES = {"p50": 50, "p90": 90, "p99": 99}


def row(label: str, reported: float, true: float, extra: str = "") -> str:
    """One printed comparison."""
    mark = "ok" if within(reported, true) else "OUT"
    return (f"  {label:<24} reported {reported:9.3f} ms  true {true:9.3f} ms  "
            f"ratio {reported / true:6.3f}  {mark}{extra}")


def main() -> int:
    """Run the three experiments and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=9.0,
                        help="measured seconds of the lognormal and stall runs (whole 3 s "
                             "periods keep the stall analysis exact)")
    args = parser.parse_args()

    with GroundTruthProcess("constant:0") as server:
        zero = open_loop(server, rate_per_s=RATE_PER_S, duration_s=3.0)
    overhead_ms = zero.reported("p50") - float(np.median(zero.true_ms))
    print(f"zero service, 200 req/s, 3 s: overhead {overhead_ms:.3f} ms (reported p50 "
          f"{zero.reported('p50'):.3f}, p99 {zero.reported('p99'):.3f}; schedule lag p99 "
          f"{zero.lag_p99_ms:.3f} ms)")

    law = ServiceTime.parse("lognormal:median=5ms,sigma=0.5")
    with GroundTruthProcess(law.describe(), seed=3) as server:
        run = open_loop(server, rate_per_s=RATE_PER_S, duration_s=args.seconds)
    print(f"lognormal median 5 ms σ 0.5, 200 req/s, {args.seconds:g} s "
          f"(schedule lag p99 {run.lag_p99_ms:.3f} ms):")
    for name, q in QUANTILES.items():
        true = float(np.percentile(run.true_ms, q)) + overhead_ms
        exact = law.quantile_s(q / 100) * 1e3 + overhead_ms
        print(row(f"{name} vs truth", run.reported(name), true,
                  f"   vs law {run.reported(name) / exact:6.3f}"))

    with GroundTruthProcess("constant:5ms", stall_s=0.3, stall_every_s=3.0) as server:
        stalled = open_loop(server, rate_per_s=RATE_PER_S, duration_s=args.seconds)
        closed_ms = closed_loop(server, duration_s=args.seconds)
    base_ms = float(np.median(closed_ms))
    true_p99 = float(np.percentile(stalled.true_ms, 99)) + overhead_ms
    analysis = 270.0 + base_ms
    print(f"stalls 300 ms every 3 s, 5 ms service, 200 req/s, {args.seconds:g} s "
          f"({(stalled.stall_wait_ms > 0).mean():.1%} of requests held; base {base_ms:.3f} ms):")
    print(row("open-loop p99", stalled.reported("p99"), true_p99,
              f"   vs analysis {stalled.reported('p99') / analysis:6.3f}"))
    closed_p99 = float(np.percentile(closed_ms, 99))
    print(f"  {'closed-loop p99':<24} reported {closed_p99:9.3f} ms  true {true_p99:9.3f} ms  "
          f"ratio {closed_p99 / true_p99:6.3f}  (coordinated omission)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

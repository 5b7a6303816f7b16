"""``caliper demo``: build the example ranking model in two versions and load-test both."""

from __future__ import annotations

import argparse
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["register", "run"]

NAME = "demo"

EXAMPLES = """\
examples:
  # the whole story in about two minutes on a 2-core machine
  caliper demo

  # a 30-second version, everything under /tmp/demo
  caliper demo --quick --out /tmp/demo

  # a faster machine: more queries per second, rebuilt from scratch
  caliper demo --rps 4 --rebuild

The first run generates the data and trains the model (about 20 s); later runs reuse them
from <out>/artifacts/ until the generator or the model code changes. Both runs are stored
like `caliper run` stores runs: <runs-dir>/<run_id>/ and <runs-dir>/caliper.db, tagged demo.
Exit 0; 1 when every request of a version failed; 130 when interrupted.
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME,
        help="build an example ranking model (slow and fast transform) and load-test both",
        description=(
            "Generate search-ranking data, train a Keras ranking model with ~300 features and\n"
            "export it twice (v1: a row-by-row feature transform, v2: the same transform\n"
            "vectorized), serve each on the embedded server, send both the same bursty\n"
            "queries of 1000 candidates in requests of 25 with a 250 ms deadline, and show\n"
            "what changed."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="where the data, the models and the comparison go "
                             "(default runs/demo)")
    parser.add_argument("--runs-dir", default="runs", metavar="DIR",
                        help="where the two runs are stored, one folder each (default runs)")
    parser.add_argument("--db", metavar="FILE",
                        help="the run database (default <runs-dir>/caliper.db)")
    parser.add_argument("--quick", action="store_true",
                        help="less data, shorter training and 5-second runs")
    parser.add_argument("--rps", metavar="QPS",
                        help="mean query rate of the bursty arrivals (default 0.8)")
    parser.add_argument("--rebuild", action="store_true",
                        help="regenerate the data and retrain even when cached")
    parser.add_argument("--quiet", action="store_true",
                        help="no live progress during the runs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; returns the exit code."""
    import os
    from dataclasses import replace

    from modelcaliper.demo.story import DemoSettings, run_demo

    # TensorFlow's C++ start-up chatter would bury the story; its warnings and errors stay.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.rps is not None:
        try:
            rate = float(args.rps)
        except ValueError:
            raise UsageError(f"--rps must be a number of queries per second, "
                             f"got {args.rps!r}") from None
        if not rate > 0 or rate == float("inf"):
            raise UsageError(f"--rps must be a finite number > 0, got {args.rps!r}")
        settings = replace(settings, rate_qps=rate)
    report = run_demo(args.out, settings, runs_dir=args.runs_dir, db_path=args.db,
                      rebuild=args.rebuild, progress=not args.quiet)
    if report["interrupted"]:
        return 130
    return 1 if report["failed"] else 0

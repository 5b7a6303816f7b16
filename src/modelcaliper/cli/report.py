"""``caliper report``: one self-contained HTML file (or the view data as JSON) of stored runs,
or of a sweep (``--sweep``)."""

from __future__ import annotations

import argparse
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["register", "run"]

NAME = "report"

EXAMPLES = """\
examples:
  # one run, by id (looked up in runs/caliper.db) or by its folder
  caliper report 20261127-041500-ranker-3fa9c1 --html ranker.html
  caliper report runs/20261127-041500-ranker-3fa9c1 --html ranker.html

  # compare two versions: the first run is the baseline
  caliper report RUN_V1 RUN_V2 --html v1-vs-v2.html

  # the same data as JSON, for scripts
  caliper report RUN --json run.json

  # a sweep: by id (looked up in runs/sweeps/), by its folder or its sweep.json
  caliper report --sweep 20261127-101500-sweep-ranker-3fa2c1 --html sweep.html

The HTML file embeds its data, scripts and styles: it opens offline from disk.
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME, help="write a self-contained HTML report of one run, or a comparison of several",
        description="Render stored runs as one HTML file: the Run view of each run and, with\n"
                    "several runs, the Compare view against the first one.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run id or run folder")
    parser.add_argument("--sweep", metavar="SWEEP",
                        help="report a sweep instead: its id (in the sweeps folder next to the "
                             "run database), its folder or its sweep.json")
    parser.add_argument("--html", metavar="FILE", help="write the HTML report to FILE")
    parser.add_argument("--json", metavar="FILE", help="write the views' data as JSON to FILE")
    parser.add_argument("--store", default=None, metavar="DB",
                        help="run database to look run ids up in (default runs/caliper.db)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the views of ``args.runs`` and write the requested files; returns the exit code."""
    import time
    from pathlib import Path

    import orjson

    from modelcaliper.report.compare import compare_view
    from modelcaliper.report.data import run_view
    from modelcaliper.report.sources import resolve_runs
    from modelcaliper.store import DEFAULT_PATH
    from modelcaliper.store._files import atomic_write

    if not args.html and not args.json:
        raise UsageError("caliper report needs --html FILE or --json FILE")
    if args.sweep is not None:
        if args.runs:
            raise UsageError("give runs or --sweep, not both (a sweep's report links its runs "
                             "by id)")
        return _sweep_report(args)
    if not args.runs:
        raise UsageError("caliper report needs a RUN (id or folder) or --sweep SWEEP")
    started = time.perf_counter()
    runs = resolve_runs(list(args.runs), args.store or DEFAULT_PATH)
    views = [run_view(folder, stored) for folder, stored in runs]
    compare = compare_view(runs) if len(runs) > 1 else None
    if args.json:
        atomic_write(Path(args.json), orjson.dumps(
            {"views": views, "compare": compare},
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
        print(f"wrote {args.json}")
    if args.html:
        from modelcaliper.report.html import render_report

        page = render_report(views, compare).encode("utf-8")
        atomic_write(Path(args.html), page)
        print(f"wrote {args.html} ({len(page) / 1024:.0f} KiB, {len(views)} run"
              f"{'s' if len(views) > 1 else ''}, {time.perf_counter() - started:.2f} s)")
    return 0


def _sweep_report(args: argparse.Namespace) -> int:
    """Write the Sweep view of ``args.sweep`` as HTML and/or JSON; returns the exit code."""
    from pathlib import Path

    import orjson

    from modelcaliper.report.sweep import read_sweep, sweep_view
    from modelcaliper.store import DEFAULT_PATH
    from modelcaliper.store._files import atomic_write

    document = read_sweep(args.sweep, Path(args.store or DEFAULT_PATH).parent / "sweeps")
    view = sweep_view(document)
    if args.json:
        atomic_write(Path(args.json), orjson.dumps(
            view, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        print(f"wrote {args.json}")
    if args.html:
        from modelcaliper.report.html import render_sweep_page

        page = render_sweep_page(view, inline_assets=True, links=False).encode("utf-8")
        atomic_write(Path(args.html), page)
        print(f"wrote {args.html} ({len(page) / 1024:.0f} KiB, sweep {view['sweep']['sweep_id']}, "
              f"{len(view['points'])} runs)")
    return 0

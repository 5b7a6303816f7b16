"""``caliper ui``: the web UI over the results store (Runs, Run, Compare, New run and ``/api/``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from modelcaliper.errors import UsageError

__all__ = ["LOOPBACK_HOSTS", "TOKEN_ENV", "check_binding", "register", "run"]

NAME = "ui"
TOKEN_ENV = "CALIPER_UI_TOKEN"
"""Environment variable holding the access token (instead of ``--token``)."""

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Hosts that may be bound without a token."""

EXAMPLES = f"""\
examples:
  # browse runs/caliper.db on http://127.0.0.1:8765/
  caliper ui

  # another store and port
  caliper ui --store /data/runs/caliper.db --port 9000

  # queue new runs from the browser (/runs/new) of the models and datasets found here
  caliper ui --models-dir models --data-dir data

  # reachable from other machines: a token is required, checked on every request
  {TOKEN_ENV}=$(openssl rand -hex 16) caliper ui --host 0.0.0.0
  # then open http://HOST:8765/?token=... once (it is kept in a cookie), or send
  # 'Authorization: Bearer ...' to /api/
"""


def register(subparsers: Any) -> None:
    """Add the ``ui`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        NAME, help="browse stored runs in a web UI (runs, run details, comparisons, JSON API)",
        description="Serve the web UI over a results store. It binds 127.0.0.1 unless told\n"
                    "otherwise; any other address needs --token (or $" + TOKEN_ENV + ").",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None, metavar="DB",
                        help="run database (default runs/caliper.db)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument("--token", default=None,
                        help=f"access token required on every request (default ${TOKEN_ENV})")
    parser.add_argument("--sweeps-dir", default=None, metavar="DIR",
                        help="sweeps to show on /sweeps (default: sweeps/ next to the run "
                             "database, where caliper sweep writes them)")
    parser.add_argument("--models-dir", action="append", default=None, metavar="DIR",
                        help="models the New run page may run (repeatable; without it the "
                             "page is off); runs are stored next to the run database")
    parser.add_argument("--data-dir", action="append", default=None, metavar="DIR",
                        help="datasets the New run page may use (repeatable)")
    parser.add_argument("--concurrent-runs", type=int, default=1, metavar="N",
                        help="runs of the New run page at a time; the others wait in a queue "
                             "(default 1)")
    parser.set_defaults(run=run)


def check_binding(host: str, token: str | None) -> None:
    """Refuse to bind a non-loopback address without a token (UsageError)."""
    if token is not None and len(token) < 8:
        raise UsageError("--token must be at least 8 characters")
    if host not in LOOPBACK_HOSTS and not token:
        raise UsageError(f"binding {host} makes the UI reachable from other machines: "
                         f"give --token or set {TOKEN_ENV}")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code."""
    from pathlib import Path

    from modelcaliper.store import DEFAULT_PATH

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_binding(args.host, token)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    database = Path(args.store or DEFAULT_PATH)
    if args.concurrent_runs < 1:
        raise UsageError(f"--concurrent-runs must be ≥ 1, got {args.concurrent_runs}")
    if args.data_dir and not args.models_dir:
        raise UsageError("--data-dir needs --models-dir too (the New run page runs models)")
    for flag, dirs in (("--models-dir", args.models_dir), ("--data-dir", args.data_dir)):
        for directory in dirs or ():
            if not Path(directory).is_dir():
                raise UsageError(f"{flag} {directory} is not a directory")
    if args.models_dir and not database.is_file():
        from modelcaliper.store import Store

        Store(database).close()  # new runs go there: an empty database to start with
    if not database.is_file():
        raise UsageError(f"no run database at {database} (run 'caliper run' first, or --store)")
    try:
        import uvicorn
    except ImportError:
        from modelcaliper.errors import MissingExtraError

        raise MissingExtraError("uvicorn", "ui", "caliper ui") from None
    from modelcaliper.web.app import create_app

    app = create_app(database, token=token, models_dirs=args.models_dir or (),
                     data_dirs=args.data_dir or (), concurrent_runs=args.concurrent_runs,
                     sweeps_dir=args.sweeps_dir)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"caliper ui: http://{shown}:{args.port}/ over {database}"
          + (" (token required)" if token else "")
          + (f"; new runs at /runs/new, {args.concurrent_runs} at a time" if args.models_dir
             else ""), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0

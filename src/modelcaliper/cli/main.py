"""Entry point of ``caliper``: parse arguments, run one subcommand, map errors to exit codes.

Each subcommand is a module in ``COMMANDS`` with two functions: ``register(subparsers)``, which
adds its parser and sets ``run`` as the parser's default, and ``run(args) -> int``. Adding a
subcommand is adding one line to ``COMMANDS``. Command modules import their heavy
dependencies inside ``run`` so that ``caliper --help`` stays fast.

Exit codes: 0 ok, 1 a run failed or the target failed, 2 usage or input error, 130 interrupted.
User errors print one line, ``error: <Class>: <message>``, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from modelcaliper import __version__
from modelcaliper.errors import CaliperError, UsageError

__all__ = ["COMMANDS", "CaliperArgumentParser", "build_parser", "main"]

COMMANDS: tuple[str, ...] = (
    "modelcaliper.cli.payload",
    "modelcaliper.cli.serve_model",
    "modelcaliper.cli.run",
    "modelcaliper.cli.sweep",
    "modelcaliper.cli.profile",
    "modelcaliper.cli.demo",
    "modelcaliper.cli.report",
    "modelcaliper.cli.ui",
)
"""Modules of the subcommands, in the order ``caliper --help`` lists them."""


class CaliperArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are ``UsageError``s, so they print as one line."""

    def error(self, message: str) -> NoReturn:
        """Raise the parse error as a ``UsageError`` naming the help to read."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> CaliperArgumentParser:
    """The ``caliper`` parser with every subcommand of ``COMMANDS`` registered."""
    parser = CaliperArgumentParser(
        prog="caliper",
        description="Load-test and profile a freshly trained ML model the way production calls it.",
    )
    parser.add_argument("--version", action="version", version=f"caliper {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``caliper`` with ``argv`` (default: the process arguments) and return its exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.run(args) or 0)
    except SystemExit as exc:  # --help and --version end parsing this way
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except CaliperError as exc:
        print(f"error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; silence the flush at exit as well.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

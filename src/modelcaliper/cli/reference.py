"""Render the command reference (docs/cli.md) from the parsers themselves.

``python -m modelcaliper.cli.reference > docs/cli.md`` (``make docs``); a test checks the
committed file matches, so the reference never drifts from ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys

from modelcaliper.cli.main import build_parser

__all__ = ["render_reference"]


def render_reference() -> str:
    """The Markdown reference: ``caliper --help`` and each subcommand's ``--help``."""
    # argparse wraps help text to the terminal width; pin it so the output is reproducible.
    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    parts = ["# Command reference", "",
             "Generated from `--help` by `make docs`; do not edit by hand.", "",
             "## caliper", "", "```text", parser.format_help().rstrip(), "```", ""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        parts += [f"## caliper {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render_reference())

"""The committed command reference matches what ``--help`` prints."""

from __future__ import annotations

from pathlib import Path

from modelcaliper.cli.reference import render_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_current():
    assert DOCS.read_text() == render_reference(), "docs/cli.md is stale: run `make docs`"


def test_reference_lists_every_command():
    text = render_reference()
    assert "## caliper payload" in text
    assert "--batch-size" in text

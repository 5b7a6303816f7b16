"""The ``caliper`` entry point: subcommand registry, --version, --help and error mapping."""

from __future__ import annotations

import argparse
import importlib

import pytest

import modelcaliper.cli.main as cli_main
from modelcaliper import __version__
from modelcaliper.cli.main import COMMANDS, main
from modelcaliper.errors import DataError, TargetError, UsageError

# What the fake subcommand below raises, set by each test.
RAISE: list[BaseException] = []


def register(subparsers: argparse._SubParsersAction) -> None:
    """A fake ``boom`` subcommand for these tests: raises whatever ``RAISE`` holds."""
    parser = subparsers.add_parser("boom")
    parser.set_defaults(run=_run_boom)


def _run_boom(args: argparse.Namespace) -> int:
    if RAISE:
        raise RAISE[0]
    return 0


@pytest.fixture
def with_boom(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", (*COMMANDS, __name__))
    RAISE.clear()
    yield RAISE
    RAISE.clear()


def test_every_command_module_registers_and_runs():
    for name in COMMANDS:
        module = importlib.import_module(name)
        assert callable(module.register) and callable(module.run)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"caliper {__version__}"


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    assert "payload" in capsys.readouterr().out


def test_payload_help_has_examples(capsys):
    assert main(["payload", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "caliper payload --signature examples/signatures/ranking.json" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND"),  # no subcommand
        (["fly"], "invalid choice: 'fly'"),  # unknown subcommand
        (["payload", "--verbose"], "unrecognized arguments"),  # unknown flag
        (["payload", "--rows", "many"], "invalid int value: 'many'"),  # bad flag value
    ],
)
def test_argparse_errors_are_one_line_usage_errors(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: UsageError: ")
    assert fragment in err
    assert "--help" in err


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (UsageError("bad flag"), 2, "error: UsageError: bad flag"),  # usage error
        (DataError("bad\nfile"), 2, "error: DataError: bad file"),  # newlines are folded
        (TargetError("server died"), 1, "error: TargetError: server died"),  # target failure
    ],
)
def test_caliper_errors_print_one_line(with_boom, capsys, exc, code, line):
    with_boom.append(exc)
    assert main(["boom"]) == code
    assert capsys.readouterr().err == line + "\n"


def test_interrupt_exits_130(with_boom, capsys):
    with_boom.append(KeyboardInterrupt())
    assert main(["boom"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_success_returns_zero(with_boom):
    assert main(["boom"]) == 0


def test_bugs_are_not_hidden(with_boom):
    # an unexpected exception is a bug: it must surface, not become a tidy user error
    with_boom.append(ZeroDivisionError("oops"))
    with pytest.raises(ZeroDivisionError):
        main(["boom"])

"""Config files and flags: merge, override, unknown keys, validation, ``--print-config``."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest

from modelcaliper.cli.main import main


def print_config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv, "--print-config"])
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_file_values_apply_and_typed_flags_win(model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "caliper.toml", f'''
model_path = "{model}"
rps = 5
batch-size = 4
warmup = "5s"
tag = ["ci", "nightly"]
no_metrics = true
assert = ["p99<100ms"]
''')
    # --warmup 2s equals the default, yet it was typed: it beats the file's 5s
    code, out, err = print_config(capsys, "-c", str(config), "--rps", "7", "--warmup", "2s")
    assert code == 0, err
    merged = tomllib.loads(out)
    assert merged["rps"] == "7"  # the flag
    assert merged["batch_size"] == "4"  # the file, dashes or underscores alike
    assert merged["warmup"] == "2s"
    assert merged["tag"] == ["ci", "nightly"]
    assert merged["no_metrics"] is True
    assert merged["assert"] == ["p99<100ms"]
    # resolved defaults are shown too
    assert merged["protocol"] == "v2-grpc" and merged["duration"] == "30s"


def test_printed_config_reads_back_to_the_same_options(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, first, _ = print_config(capsys, str(model), "--rps", "9", "--candidates", "50",
                                  "--batch-size", "10", "--deadline", "250ms", "--tag", "x")
    assert code == 0
    saved = write(tmp_path / "printed.toml", first)
    code, second, _ = print_config(capsys, "-c", str(saved))
    assert code == 0 and second == first


@pytest.mark.parametrize(("suffix", "text"), [
    # JSON, with native numbers and booleans
    (".json", '{"rps": 12, "quiet": true, "tag": "one"}'),
    # TOML
    (".toml", 'rps = 12\nquiet = true\ntag = "one"\n'),
])
def test_json_and_toml_files(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             suffix: str, text: str) -> None:
    config = write(tmp_path / f"c{suffix}", text)
    code, out, err = print_config(capsys, str(model), "-c", str(config),
                                  "--config-format", "json")
    assert code == 0, err
    merged = json.loads(out)
    assert (merged["rps"], merged["quiet"], merged["tag"]) == ("12", True, ["one"])


def test_yaml_needs_pyyaml_or_says_what_to_do(model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "c.yaml", "rps: 12\n")
    code, out, err = print_config(capsys, str(model), "-c", str(config))
    if importlib.util.find_spec("yaml") is not None:
        assert code == 0 and tomllib.loads(out)["rps"] == "12"
    else:
        assert code == 2
        assert "needs PyYAML" in err and "TOML or JSON" in err


BAD_FILES = [
    # a misspelt key, with the closest option
    ("rsp = 5\n", "unknown option 'rsp' in {path}; did you mean 'rps'?"),
    ("batchsize = 5\n", "did you mean 'batch_size'?"),
    # nothing close: point at the help
    ("colour = 'red'\n", "unknown option 'colour' in {path} (see 'caliper run --help')"),
    # the command's own switches cannot come from a file
    ("print_config = true\n", "unknown option 'print_config'"),
    # a boolean option needs a boolean
    ("no_store = 'yes'\n", "option 'no_store' in {path} must be true or false"),
    # a choice outside its choices
    ("protocol = 'grpc'\n", "option 'protocol' in {path} must be one of tfserving-rest"),
    # one value, not a list; a value, not a table
    ("rps = [1, 2]\n", "option 'rps' in {path} takes one value, got a list"),
    ("[rps]\nx = 1\n", "option 'rps' in {path} must be a value, not a table"),
    # merged values are validated like flags
    ("batch_size = 0\n", "--batch-size must be ≥ 1, got 0"),
    # not TOML at all
    ("rps = = 5\n", "cannot be parsed"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_config_files_are_one_line_exit_2(model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], text: str,
                                              message: str) -> None:
    config = write(tmp_path / "c.toml", text)
    code, out, err = print_config(capsys, str(model), "-c", str(config))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert message.format(path=config) in err


def test_missing_and_unknown_kinds_of_config_file(model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = print_config(capsys, str(model), "-c", str(tmp_path / "none.toml"))
    assert code == 2 and "does not exist" in err
    code, _, err = print_config(capsys, str(model), "-c", str(write(tmp_path / "c.ini", "")))
    assert code == 2 and "must end in .toml, .json, .yaml or .yml" in err

"""The New run form's ground rules: confinement to the roots, discovery, and the CLI's checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelcaliper.errors import CaliperError, DataError, UsageError
from modelcaliper.web.newrun import (
    NewRunSettings,
    build_form_spec,
    confine,
    confine_data,
    confine_model,
    discover_datasets,
    discover_models,
)
from tests.web.newrun_env import MODEL_FILE, Roots, make_roots


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    world = make_roots(tmp_path_factory.mktemp("newrun"))
    # links: one inside the root pointing inside, the others pointing out of it
    os.symlink(world.models / MODEL_FILE, world.models / "alias.onnx")
    os.symlink(world.outside / "secret.onnx", world.models / "escape.onnx")
    os.symlink(world.outside, world.models / "outside-dir")
    os.symlink(world.outside / "secret.csv", world.data / "escape.csv")
    parts = world.data / "parts"
    parts.mkdir()
    for i in range(2):
        (parts / f"part-{i}.csv").write_text("features\n1\n", encoding="utf-8")
    sneaky = world.data / "sneaky"
    sneaky.mkdir()
    (sneaky / "a.csv").write_text("features\n1\n", encoding="utf-8")
    os.symlink(world.outside / "secret.csv", sneaky / "b.csv")
    (world.models / ".hidden").mkdir()
    (world.models / ".hidden" / "model.onnx").write_bytes(b"")
    saved = world.models / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    (world.data / "notes.txt").write_text("not data", encoding="utf-8")
    return world


@pytest.fixture(scope="module")
def settings(roots: Roots) -> NewRunSettings:
    return NewRunSettings.create([roots.models], [roots.data], roots.database)


@pytest.mark.parametrize("given, problem", [
    ("../outside/secret.onnx", "must not contain '..'"),           # climbing out
    ("ranker/../../outside/secret.onnx", "must not contain '..'"),  # climbing out midway
    ("ranker/..", "must not contain '..'"),                        # even when it stays inside
    ("/etc/passwd", "outside the configured directories"),         # absolute, elsewhere
    ("escape.onnx", "leads outside"),                              # a file link pointing out
    ("outside-dir/secret.onnx", "leads outside"),                  # through a directory link
    ("missing.onnx", "does not exist"),                            # nothing there
    ("", "must be a path"),                                        # blank
    ("a\x00b", "not a valid path"),                                # a NUL byte
])
def test_paths_outside_the_roots_are_refused(roots, given, problem):
    with pytest.raises(UsageError, match=problem):
        confine(given, [roots.models.resolve()], "model")


def test_paths_inside_the_roots_are_accepted(roots):
    models = roots.models.resolve()
    assert confine(MODEL_FILE, [models], "model") == models / MODEL_FILE
    # absolute inside the root, and a link that stays inside (resolved to its target)
    assert confine(str(models / "ranker"), [models], "model") == models / "ranker"
    assert confine("alias.onnx", [models], "model") == models / MODEL_FILE


def test_an_absolute_path_outside_is_refused_even_through_a_link_into_the_root(roots, tmp_path):
    link = tmp_path / "into-root"
    os.symlink(roots.models, link)
    with pytest.raises(UsageError, match="outside the configured directories"):
        confine(str(link / MODEL_FILE), [roots.models.resolve()], "model")


def test_a_dataset_directory_holding_a_link_out_is_refused(roots):
    data = [roots.data.resolve()]
    assert confine_data("parts", data) == data[0] / "parts"
    with pytest.raises(UsageError, match="b.csv, a link leading outside"):
        confine_data("sneaky", data)
    with pytest.raises(UsageError, match="patterns are for the command line"):
        confine_data("parts/*.csv", data)


def test_a_model_version_is_checked_against_the_base_path(roots):
    models = [roots.models.resolve()]
    assert confine_model("ranker", "3", models) == models[0] / "ranker"
    with pytest.raises(DataError, match="no servable version '2'.*versions holding a model: 1, 3"):
        confine_model("ranker", "2", models)


def test_discovery_lists_models_with_versions_and_leaves_out_links_out_and_hidden(roots):
    found = {m["name"]: m for m in discover_models([roots.models.resolve()])}
    assert set(found) == {f"models/{MODEL_FILE}", "models/alias.onnx", "models/ranker",
                          "models/saved"}
    assert found["models/ranker"]["versions"] == ["1", "3"]
    assert found["models/ranker"]["kind"] == "onnx"
    assert found["models/saved"] == {"path": str(roots.models.resolve() / "saved"),
                                     "name": "models/saved", "kind": "tensorflow",
                                     "versions": []}
    assert found[f"models/{MODEL_FILE}"]["versions"] == []


def test_discovery_lists_data_files_and_directories_of_one_kind(roots):
    found = {d["name"]: d for d in discover_datasets([roots.data.resolve()])}
    assert set(found) == {"data/rows.parquet", "data/parts/", "data/parts/part-0.csv",
                          "data/parts/part-1.csv", "data/sneaky/a.csv"}
    assert found["data/parts/"]["files"] == 2 and found["data/parts/"]["format"] == "csv"
    assert found["data/rows.parquet"]["format"] == "parquet"


@pytest.mark.parametrize("fields, message", [
    # the CLI's own messages, word for word
    ({"model": MODEL_FILE, "batch_size": 0}, "--batch-size must be ≥ 1, got 0"),
    ({"model": MODEL_FILE, "duration": "soon"}, "--duration must look like 250ms, 2s or 1m"),
    ({"model": MODEL_FILE, "compression": "zstd"}, "--compression zstd is HTTP-only"),
    ({"model": MODEL_FILE, "encoding": "columnar"}, "--encoding does not apply to v2-grpc"),
    ({"model": MODEL_FILE, "protocol": "grpc"},
     "option 'protocol' in the new-run form must be one of tfserving-rest"),
    # the form's own rules
    ({"model": MODEL_FILE, "launch": "rm -rf /"}, "unknown field 'launch'"),
    ({"model": MODEL_FILE, "runs_dir": "/tmp"}, "unknown field 'runs_dir'"),
    ({"model": MODEL_FILE, "rps": True}, "field 'rps' must be a number"),
    ({"model": MODEL_FILE, "where": 3}, "field 'where' must be text"),
    ({"model": MODEL_FILE, "tag": [1]}, "field 'tag' must be text or a list of texts"),
    ({"rps": 5}, "pick a model"),
    ({"model": MODEL_FILE, "data": "../outside/secret.csv"}, "must not contain '..'"),
    ({"model": MODEL_FILE, "data": "escape.csv"}, "leads outside"),
])
def test_form_values_are_checked_like_the_command_line(settings, fields, message):
    with pytest.raises(CaliperError) as raised:
        build_form_spec(fields, settings)
    assert message in str(raised.value)


def test_a_good_form_becomes_a_run_spec_stored_in_the_ui_database(settings, roots):
    spec = build_form_spec({"model": "ranker", "data": "rows.parquet", "rps": "7",
                            "batch_size": 4, "protocol": "v2-rest", "encoding": "binary",
                            "duration": "3s", "warmup": "", "tag": ["ui"],
                            "assert": ["p99<1s"], "where": "country == 'US'"}, settings)
    assert spec.model_path == roots.models.resolve() / "ranker" and spec.model_version == "3"
    assert spec.data == str(roots.data.resolve() / "rows.parquet")
    assert spec.db_path == roots.database.resolve()
    assert spec.runs_dir == roots.database.resolve().parent
    assert spec.load.batch_size == 4 and spec.load.duration_s == 3
    assert spec.encoding == "v2-rest binary" and spec.tags == ("ui",)
    assert spec.selection.where == "country == 'US'" and spec.quiet
    assert spec.launch is None and spec.target_kind == "embedded"


def test_without_data_roots_a_dataset_is_refused(roots):
    settings = NewRunSettings.create([roots.models], [], roots.database)
    with pytest.raises(UsageError, match="datasets are off"):
        build_form_spec({"model": MODEL_FILE, "data": "rows.parquet"}, settings)


def test_a_root_must_be_a_directory(roots):
    with pytest.raises(UsageError, match="--models-dir .* is not a directory"):
        NewRunSettings.create([roots.models / MODEL_FILE], [], roots.database)


def test_the_roots_are_resolved(roots, tmp_path):
    link = tmp_path / "models-link"
    os.symlink(roots.models, link)
    settings = NewRunSettings.create([link], [], Path(roots.database))
    assert settings.models_dirs == (roots.models.resolve(),) and settings.enabled

"""Environment facts: host, versions without importing heavy libraries, the model's git commit."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import orjson
import pytest

from modelcaliper.store.environment import LIBRARIES, collect_environment, git_facts


def git(*args: str, cwd) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_every_fact_is_there_and_json_ready(tmp_path):
    environment = collect_environment(seeds={"seed": 7, "data_seed": 3})
    assert set(environment) == {"collected_at", "host", "python", "versions", "model", "seeds"}
    host = environment["host"]
    assert {"hostname", "cpu_model", "cpu_count", "cpus_usable", "memory_bytes",
            "load_average_1m", "os", "os_release", "kernel", "machine", "platform"} == set(host)
    assert host["cpu_count"] >= 1 and 1 <= host["cpus_usable"] <= host["cpu_count"]
    assert host["memory_bytes"] > 2**26
    assert environment["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert environment["seeds"] == {"seed": 7, "data_seed": 3}
    assert environment["model"] is None  # no model path given
    assert environment["collected_at"].endswith("Z")
    assert orjson.loads(orjson.dumps(environment)) == environment


def test_versions_come_from_the_installed_metadata():
    versions = collect_environment()["versions"]
    assert set(versions) == set(LIBRARIES)
    for name in ("numpy", "pyarrow", "grpcio", "protobuf", "modelcaliper"):
        assert versions[name] == metadata.version(name), name


def test_tensorflow_is_not_imported_to_learn_its_version():
    script = ("import sys; from modelcaliper.store.environment import collect_environment; "
              "v = collect_environment()['versions']; "
              "print(v['tensorflow'], v['onnxruntime'], 'tensorflow' in sys.modules, "
              "'onnxruntime' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    tensorflow, onnxruntime, tf_loaded, ort_loaded = done.stdout.split()
    assert tensorflow != "None" and onnxruntime != "None"  # both installed here
    assert (tf_loaded, ort_loaded) == ("False", "False")


def test_a_model_in_a_git_work_tree_gets_its_commit(tmp_path):
    repo = tmp_path / "repo"
    (repo / "models" / "ranker").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    (repo / "models" / "ranker" / "model.onnx").write_bytes(b"weights")
    (repo / ".gitignore").write_text("generated/\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "model", cwd=repo)
    commit = git("rev-parse", "HEAD", cwd=repo)

    facts = collect_environment(model_path=repo / "models" / "ranker")["model"]
    assert facts["path"] == str(repo / "models" / "ranker")
    assert facts["git"] == {"root": str(repo.resolve()), "commit": commit, "tracked": True,
                            "dirty": False}
    # a file path works as well as a folder, and a change makes the model dirty
    (repo / "models" / "ranker" / "model.onnx").write_bytes(b"retrained")
    assert git_facts(repo / "models" / "ranker" / "model.onnx")["dirty"] is True
    # a model in an ignored folder is not described by the commit
    (repo / "generated").mkdir()
    (repo / "generated" / "m.onnx").write_bytes(b"x")
    assert git_facts(repo / "generated" / "m.onnx")["tracked"] is False


@pytest.mark.parametrize("where", [
    "plain",  # a folder outside any git work tree
    "missing",  # a path that does not exist
])
def test_no_git_facts_outside_a_work_tree(where, tmp_path):
    path = tmp_path / where
    if where == "plain":
        path.mkdir()
    assert git_facts(path) is None
    assert collect_environment(model_path=path)["model"] == {"path": str(path), "git": None}

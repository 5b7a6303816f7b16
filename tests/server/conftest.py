"""Models built once per test session for the server tests (see ``tests/models.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import (
    build_onnx_mlp,
    build_onnx_multi_io,
    build_tf_echo_model,
    build_tf_ranking_model,
)


@pytest.fixture(scope="session")
def onnx_mlp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300 → 256 → 128 → 1 ONNX MLP."""
    return build_onnx_mlp(tmp_path_factory.mktemp("onnx") / "mlp.onnx")


@pytest.fixture(scope="session")
def onnx_multi_io_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX model with FP32, INT64, BYTES and BOOL inputs and outputs."""
    return build_onnx_multi_io(tmp_path_factory.mktemp("onnx") / "multi_io.onnx")


@pytest.fixture(scope="session")
def tf_ranking_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF Serving model base path holding ranking model versions 1 and 2."""
    base = tmp_path_factory.mktemp("ranking")
    for version in (1, 2):
        build_tf_ranking_model(base, version=version)
    return base


@pytest.fixture(scope="session")
def tf_echo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel with a string output and an any-rank input, without transform/model."""
    return build_tf_echo_model(tmp_path_factory.mktemp("echo") / "echo")

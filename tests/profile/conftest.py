"""Models built once per test session for the profiling tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import build_onnx_mlp, build_tf_ranking_model
from tests.profile.builders import build_dominant_matmul_onnx, build_map_fn_model


@pytest.fixture(scope="session")
def dominant_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX MLP whose ``wide_matmul`` node dominates."""
    return build_dominant_matmul_onnx(tmp_path_factory.mktemp("profile-onnx") / "dominant.onnx")


@pytest.fixture(scope="session")
def onnx_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared test MLP (unnamed nodes)."""
    return build_onnx_mlp(tmp_path_factory.mktemp("profile-mlp") / "mlp.onnx", n_inputs=32,
                          hidden=(64, 16))


@pytest.fixture(scope="session")
def map_fn_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SavedModels with a slow ``tf.map_fn``: ``{"transform-numeric": path, ...}``."""
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("profile-mapfn")
    return {f"{scope}-{body}": build_map_fn_model(root / f"{scope}-{body}", scope=scope,
                                                  body=body)
            for scope, body in (("transform", "numeric"), ("features", "strings"),
                                ("features", "numeric"))}


@pytest.fixture(scope="session")
def ranking_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Keras ranking model (transform and model signatures), version 1."""
    pytest.importorskip("tensorflow")
    return build_tf_ranking_model(tmp_path_factory.mktemp("profile-ranking"), version=1)

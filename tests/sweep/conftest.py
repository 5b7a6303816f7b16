"""Fixtures of the sweep tests: small ONNX models and a helper that runs ``caliper sweep``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import build_onnx_mlp


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX MLP served as ``mlp``: input ``features`` [-1, 6], output ``score``."""
    return build_onnx_mlp(tmp_path_factory.mktemp("sweep-model") / "mlp.onnx", n_inputs=6,
                          hidden=(8,))


@pytest.fixture(scope="session")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wider MLP (300 features, hidden 256 and 128): real work per row, big payloads."""
    return build_onnx_mlp(tmp_path_factory.mktemp("sweep-wide") / "wide.onnx", n_inputs=300,
                          hidden=(256, 128))

"""Fixtures of the target tests: a small ONNX model for the servers they start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import build_onnx_mlp
from tests.targets.helpers import N_INPUTS


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX MLP named ``mlp``: input ``features`` [-1, 6], output ``score``."""
    return build_onnx_mlp(tmp_path_factory.mktemp("model") / "mlp.onnx", n_inputs=N_INPUTS,
                          hidden=(8,))

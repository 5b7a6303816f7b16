"""Fixtures of the ``caliper run`` tests: the test model, a server already running, helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcaliper.targets import EmbeddedServer
from modelcaliper.targets.affinity import CpuPlan
from tests.models import build_onnx_mlp

N_INPUTS = 6
"""Width of the ``features`` input of the test model."""


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX MLP served as ``mlp``: input ``features`` [-1, 6], output ``score``."""
    return build_onnx_mlp(tmp_path_factory.mktemp("model") / "mlp.onnx", n_inputs=N_INPUTS,
                          hidden=(8,))


@pytest.fixture(scope="module")
def served(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """``caliper serve-model`` on the test model, running before and after the tests."""
    server = EmbeddedServer(model, protocol="v2-rest", cpus=CpuPlan(),
                            log_dir=tmp_path_factory.mktemp("served"))
    with server as endpoint:
        yield endpoint

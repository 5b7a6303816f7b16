"""Isolated profiling: batches cut from the rows, settings checked, missing runtimes named."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from modelcaliper.errors import DataError, MissingExtraError, UsageError
from modelcaliper.profile.isolated import IsolatedSettings, cut_batches, profile_isolated

CUT_CASES = [
    # (rows, batch size, count, first rows of each batch)
    # batches follow each other through the rows
    (10, 3, 3, [0, 3, 6]),
    # and wrap around at the end
    (10, 4, 3, [0, 4, 8]),
    # a batch larger than the rows repeats them
    (3, 5, 2, [0, 2]),
]


@pytest.mark.parametrize(("rows", "size", "count", "firsts"), CUT_CASES)
def test_cut_batches(rows: int, size: int, count: int, firsts: list[int]) -> None:
    inputs = {"a": np.arange(rows), "b": np.arange(rows * 2).reshape(rows, 2)}
    batches = cut_batches(inputs, size, count)
    assert len(batches) == count
    assert [int(batch["a"][0]) for batch in batches] == firsts
    for batch in batches:
        assert batch["a"].shape == (size,) and batch["b"].shape == (size, 2)
        assert np.array_equal(batch["b"][:, 0], batch["a"] * 2)  # rows stay whole


def test_cut_batches_refuses_ragged_or_empty_inputs() -> None:
    with pytest.raises(DataError, match="one, non-zero number of rows"):
        cut_batches({"a": np.arange(3), "b": np.arange(4)}, 2, 1)
    with pytest.raises(DataError, match="one, non-zero number of rows"):
        cut_batches({"a": np.arange(0)}, 2, 1)


BAD_SETTINGS = [
    # no batch sizes, or a zero one
    ({"batch_sizes": ()}, "--batch-size"),
    ({"batch_sizes": (5, 0)}, "--batch-size"),
    # nothing to profile
    ({"predictions": 0}, "--predictions"),
    ({"warmup": -1}, "--warmup"),
    ({"graph": "fused"}, "--graph"),
]


@pytest.mark.parametrize(("kwargs", "flag"), BAD_SETTINGS)
def test_settings_are_checked(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        IsolatedSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("module", "extra", "model"), [
    # an ONNX model without onnxruntime installed
    ("onnxruntime", "onnx", "dominant_onnx"),
    # a SavedModel without TensorFlow installed
    ("tensorflow", "tensorflow", "ranking_model"),
])
def test_missing_runtime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         request: pytest.FixtureRequest, module: str, extra: str,
                                         model: str) -> None:
    path = request.getfixturevalue(model)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    with pytest.raises(MissingExtraError, match=rf"pip install 'modelcaliper\[{extra}\]'") as info:
        profile_isolated(path, {"x": np.zeros(1)}, tmp_path)
    assert info.value.extra == extra and "profiling" in str(info.value)


def test_original_graph_is_for_onnx_only(ranking_model: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="ONNX models only"):
        profile_isolated(ranking_model, {"x": np.zeros(1)}, tmp_path,
                         IsolatedSettings(graph="original"))

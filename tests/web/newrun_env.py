"""A small world for the New run tests: model and data roots, a run database, a tiny model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelcaliper.store import Store
from tests.models import build_onnx_mlp

N_INPUTS = 6
MODEL_FILE = "tiny-mlp-for-the-form.onnx"
"""The model under the model root (a name no generated input will guess)."""


@dataclass(frozen=True)
class Roots:
    """Where the form may look, and the database its runs go to."""

    models: Path
    data: Path
    database: Path
    outside: Path


def make_roots(base: Path) -> Roots:
    """Models (a file and a base path of versions 1 and 3), a Parquet dataset, an empty store,
    and a directory outside every root."""
    models, data, runs, outside = (base / name for name in ("models", "data", "runs", "outside"))
    build_onnx_mlp(models / MODEL_FILE, n_inputs=N_INPUTS, hidden=(8,))
    for version in (1, 3):
        build_onnx_mlp(models / "ranker" / str(version) / "model.onnx", n_inputs=N_INPUTS,
                       hidden=(8,))
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((256, N_INPUTS)).astype(np.float32)
    pq.write_table(pa.table({"features": list(rows), "country": ["US", "FR"] * 128}),
                   data / "rows.parquet")
    outside.mkdir()
    build_onnx_mlp(outside / "secret.onnx", n_inputs=N_INPUTS, hidden=(8,))
    (outside / "secret.csv").write_text("features\n1\n", encoding="utf-8")
    Store(runs / "caliper.db").close()
    return Roots(models, data, runs / "caliper.db", outside)

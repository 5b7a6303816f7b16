"""The example ranking model and its data, and ``caliper demo``'s story around them.

    write_dataset(path)                 queries of 1 000 candidates as Parquet (``data``)
    build_models(dir, path)             SavedModels ``dir/ranker/{1,2}``: v1 with an
                                        unvectorized transform, v2 vectorized (``model``)
    run_demo("runs/demo")               both versions under the same bursty load (``story``)

TensorFlow is imported only when a model is built.
"""

from __future__ import annotations

from modelcaliper.demo.data import FeatureLayout, write_dataset
from modelcaliper.demo.model import BuildReport, TrainConfig, build_models
from modelcaliper.demo.story import DemoSettings, run_demo

__all__ = [
    "BuildReport",
    "DemoSettings",
    "FeatureLayout",
    "TrainConfig",
    "build_models",
    "run_demo",
    "write_dataset",
]

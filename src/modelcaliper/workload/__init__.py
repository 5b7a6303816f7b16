"""Where request rows come from: datasets on disk or synthetic rows, cut into model requests."""

from __future__ import annotations

from modelcaliper.workload.datasets import read_columns
from modelcaliper.workload.requests import (
    build_requests,
    coerce_column,
    match_columns,
    normalise_name,
)
from modelcaliper.workload.synthetic import QUERY_COLUMN, synthetic_columns

__all__ = [
    "QUERY_COLUMN",
    "build_requests",
    "coerce_column",
    "match_columns",
    "normalise_name",
    "read_columns",
    "synthetic_columns",
]

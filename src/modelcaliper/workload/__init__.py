"""Where request rows come from: datasets on disk or synthetic rows, cut into model requests.

``select_rows`` reads a Parquet, CSV, JSON-lines or TFRecord source through a ``Selection``
(sample, fraction, ``where`` filter, groups, strata, queries); ``map_inputs`` turns the rows'
columns into model input tensors; ``build_requests`` cuts them into requests;
``synthetic_columns`` makes rows from a signature instead; ``OutputChecker`` counts the
model's own errors in the responses.
"""

from __future__ import annotations

from modelcaliper.workload.datasets import open_source, read_columns
from modelcaliper.workload.expected import MODEL_ERROR_KINDS, ModelError, OutputChecker
from modelcaliper.workload.filters import parse_where
from modelcaliper.workload.mapping import InputMap, load_input_map, map_inputs, plan_inputs
from modelcaliper.workload.queries import plan_queries
from modelcaliper.workload.requests import (
    build_requests,
    coerce_column,
    match_columns,
    normalise_name,
)
from modelcaliper.workload.selection import SelectedRows, Selection, select_rows
from modelcaliper.workload.synthetic import QUERY_COLUMN, signature_from_server, synthetic_columns

__all__ = [
    "MODEL_ERROR_KINDS",
    "QUERY_COLUMN",
    "InputMap",
    "ModelError",
    "OutputChecker",
    "SelectedRows",
    "Selection",
    "build_requests",
    "coerce_column",
    "load_input_map",
    "map_inputs",
    "match_columns",
    "normalise_name",
    "open_source",
    "parse_where",
    "plan_inputs",
    "plan_queries",
    "read_columns",
    "select_rows",
    "signature_from_server",
    "synthetic_columns",
]

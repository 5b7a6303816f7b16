"""Turn named columns into model requests: match columns to inputs, coerce, cut into batches.

Columns are matched to a signature's inputs by exact name first, then by a normalised name
(lower case, every run of non-alphanumerics turned into ``_``), so a ``Price (USD)`` column
feeds a ``price_usd`` input. Values are converted to each input's dtype only when that loses
nothing (a float column with whole numbers can feed an integer input; a string column cannot
feed a float one), and every refusal names both the column and the input.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType, InferRequest, as_tensor

__all__ = [
    "build_requests",
    "coerce_column",
    "group_codes",
    "group_slices",
    "input_tensors",
    "match_columns",
    "normalise_name",
]


def normalise_name(name: str) -> str:
    """``name`` in lower case with every run of non-alphanumeric characters replaced by ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def match_columns(
    column_names: Sequence[str],
    signature: Signature,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each input name of ``signature`` to the column that feeds it.

    ``explicit`` (input → column, from ``--map`` or a map file) wins; then an exact name;
    then the normalised name.
    """
    by_normal: dict[str, list[str]] = {}
    for column in column_names:
        by_normal.setdefault(normalise_name(column), []).append(column)
    mapping: dict[str, str] = {}
    missing: list[str] = []
    explicit = explicit or {}
    input_names = [spec.name for spec in signature.inputs]
    for name, column in explicit.items():
        if name not in input_names:
            close = difflib.get_close_matches(name, input_names, n=3)
            hint = f"close input names: {', '.join(close)}" if close else (
                f"the inputs are {', '.join(input_names[:8])}"
                + (" ..." if len(input_names) > 8 else ""))
            raise DataError(f"the map names input '{name}', which the model does not have; {hint}")
        if column not in column_names:
            close = difflib.get_close_matches(column, list(column_names), n=3)
            hint = f"; close column names: {', '.join(close)}" if close else ""
            raise DataError(f"the map feeds input '{name}' from column '{column}', which the "
                            f"data does not have{hint}")
    for spec in signature.inputs:
        if spec.name in explicit:
            mapping[spec.name] = explicit[spec.name]
            continue
        if spec.name in column_names:
            mapping[spec.name] = spec.name
            continue
        candidates = by_normal.get(normalise_name(spec.name), [])
        if len(candidates) == 1:
            mapping[spec.name] = candidates[0]
        elif len(candidates) > 1:
            raise DataError(
                f"input '{spec.name}' matches several columns ({', '.join(candidates)}); "
                "rename all but one"
            )
        else:
            missing.append(spec.name)
    if missing:
        raise DataError(_missing_message(missing, column_names))
    return mapping


def _missing_message(missing: list[str], column_names: Sequence[str]) -> str:
    shown = ", ".join(f"'{m}'" for m in missing[:8]) + (
        f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    )
    normal_to_column = {normalise_name(c): c for c in column_names}
    close: list[str] = []
    for name in missing:
        for hit in difflib.get_close_matches(
            normalise_name(name), list(normal_to_column), n=3, cutoff=0.6
        ):
            if normal_to_column[hit] not in close:
                close.append(normal_to_column[hit])
    hint = f"; close column names: {', '.join(close[:8])}" if close else ""
    return f"the data has no column for model input(s) {shown}{hint}"


def coerce_column(
    values: np.ndarray, spec: TensorSpec, column: str, *, pad: Any = None
) -> np.ndarray:
    """``values`` (one row per item of axis 0) as a tensor of the input's dtype and shape.

    A column of lists of different lengths (an object array of 1-D arrays) feeds a vector
    input only with ``pad``: shorter rows are filled with ``pad`` up to the input's fixed
    length, or up to the longest row when the length is open (``-1``); longer rows are
    refused, never cut.
    """
    values = np.asarray(values)
    label = f"column '{column}'" + ("" if column == spec.name else f" (for input '{spec.name}')")
    if _is_ragged(values):
        values = _pad_rows(values, spec, label, pad)
    values = _fit_shape(values, spec, label)
    if values.dtype == object and values.size and any(v is None for v in values.flat):
        raise DataError(
            f"{label} has missing values; input '{spec.name}' needs a value in every row"
        )
    target = spec.dtype
    textual = values.dtype == object or values.dtype.kind in "SU"
    if target is DType.BYTES:
        if values.dtype.kind == "f":
            raise DataError(
                f"{label} holds floats but input '{spec.name}' is BYTES; convert it to text first"
            )
        return as_tensor(values if textual else values.astype(str), DType.BYTES)
    if textual:
        raise DataError(f"{label} holds strings but input '{spec.name}' is {target.v2}")
    if values.dtype.kind not in "biuf":
        raise DataError(
            f"{label} holds {values.dtype} values, "
            f"which input '{spec.name}' ({target.v2}) cannot take"
        )
    numpy_target = target.numpy
    if numpy_target.kind in "biu" and values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DataError(
                f"{label} has missing or infinite values but input '{spec.name}' is {target.v2}"
            )
        if (values != np.rint(values)).any():
            bad = values[values != np.rint(values)].flat[0]
            raise DataError(
                f"{label} has non-integer values (e.g. {bad}) "
                f"but input '{spec.name}' is {target.v2}"
            )
    if numpy_target.kind == "b" and values.dtype.kind != "b":
        if not np.isin(values, (0, 1)).all():
            raise DataError(
                f"{label} has values other than 0 and 1 but input '{spec.name}' is BOOL"
            )
    elif numpy_target.kind in "iu" and values.size:
        info = np.iinfo(numpy_target)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            raise DataError(
                f"{label} has values from {low} to {high}, "
                f"outside {target.v2}'s range for input '{spec.name}'"
            )
    return as_tensor(values, target)


def _is_ragged(values: np.ndarray) -> bool:
    """Whether ``values`` is a column of lists (an object array holding arrays or None)."""
    return (values.dtype == object and values.ndim == 1 and values.size > 0
            and any(isinstance(v, (np.ndarray, list)) for v in values[:64]))


def _pad_rows(values: np.ndarray, spec: TensorSpec, label: str, pad: Any) -> np.ndarray:
    """A column of lists as a 2-D array, filled with ``pad`` (see ``coerce_column``)."""
    if any(v is None for v in values):
        raise DataError(f"{label} has missing lists; input '{spec.name}' needs a value in "
                        "every row")
    rows = [np.asarray(v) for v in values]
    if any(r.ndim != 1 for r in rows):
        raise DataError(f"{label} holds nested lists of different shapes; input "
                        f"'{spec.name}' needs rectangular rows")
    lengths = np.array([r.size for r in rows])
    row_shape = spec.row_shape()
    low, high = int(lengths.min()), int(lengths.max())
    if len(row_shape) != 1:
        raise DataError(f"{label} holds lists of {low} to {high} values but input "
                        f"'{spec.name}' wants rows of shape {list(row_shape)}")
    width = high if row_shape[0] == -1 else row_shape[0]
    if pad is None:
        want = "one length per request" if row_shape[0] == -1 else f"{width} values"
        raise DataError(f"{label} holds lists of {low} to {high} values but input "
                        f"'{spec.name}' needs {want}; set a pad value for '{spec.name}' in "
                        "the map or fix the data")
    if high > width:
        raise DataError(f"{label} has lists of up to {high} values but input '{spec.name}' "
                        f"takes {width}; shorten them in the data (padding never cuts)")
    inner = np.concatenate(rows) if high else np.empty(0)
    textual = inner.dtype == object or inner.dtype.kind in "SU" or isinstance(pad, (str, bytes))
    out = np.full((values.size, width), pad, dtype=object if textual else np.result_type(
        inner.dtype if inner.size else np.asarray(pad).dtype, np.asarray(pad).dtype))
    mask = np.arange(width) < lengths[:, None]
    out[mask] = inner
    return out


def _fit_shape(values: np.ndarray, spec: TensorSpec, label: str) -> np.ndarray:
    """``values`` in the input's row shape; a plain column may feed a ``[-1, 1]`` input."""
    row_shape = spec.row_shape()
    if values.ndim == 1 and row_shape == (1,):
        return values.reshape(-1, 1)
    if values.ndim == 2 and values.shape[1] == 1 and row_shape == ():
        return values.reshape(-1)  # one-value lists (as TFRecord features are) feed a scalar
    have = values.shape[1:]
    if len(have) != len(row_shape) or any(
        w not in (-1, h) for w, h in zip(row_shape, have, strict=True)
    ):
        want = [d if d != -1 else "any" for d in row_shape]
        raise DataError(
            f"{label} has rows of shape {list(have)} but input '{spec.name}' wants {want}"
        )
    return values


def group_codes(group_values: np.ndarray) -> np.ndarray:
    """Number each row's group 0, 1, 2, ... in order of the group's first appearance."""
    keys = np.asarray(group_values)
    if keys.ndim != 1:
        raise DataError("the group-by column must hold one value per row, not vectors")
    if keys.dtype == object:
        # Strings, bytes and None do not sort together; their text does.
        keys = np.asarray([repr(k) for k in keys])
    _, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank_of_group = np.argsort(np.argsort(first_index))
    return np.asarray(rank_of_group[inverse.reshape(-1)], dtype=np.int64)


def group_slices(
    group_values: np.ndarray | None, num_rows: int, batch_size: int
) -> list[np.ndarray]:
    """Row indices of each request: ``batch_size`` rows at most, never two groups in one request.

    Groups are kept in order of first appearance and the rows of one group in their order.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be ≥ 1, got {batch_size}")
    if group_values is None:
        return [
            np.arange(start, min(start + batch_size, num_rows))
            for start in range(0, num_rows, batch_size)
        ]
    codes = group_codes(group_values)
    order = np.argsort(codes, kind="stable")
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    slices: list[np.ndarray] = []
    for group_rows in np.split(order, boundaries):
        for start in range(0, group_rows.size, batch_size):
            slices.append(group_rows[start : start + batch_size])
    return slices


def input_tensors(
    columns: Mapping[str, np.ndarray],
    signature: Signature,
    explicit: Mapping[str, str] | None = None,
    pads: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Every input of ``signature`` as a whole-column tensor, matched and coerced from columns.

    ``explicit`` maps inputs to columns ahead of name matching; ``pads`` gives the pad value
    of inputs fed by lists of different lengths.
    """
    mapping = match_columns(list(columns), signature, explicit)
    pads = pads or {}
    return {
        spec.name: coerce_column(columns[mapping[spec.name]], spec, mapping[spec.name],
                                 pad=pads.get(spec.name))
        for spec in signature.inputs
    }


def build_requests(
    columns: Mapping[str, np.ndarray],
    signature: Signature,
    batch_size: int,
    *,
    group_by: str | None = None,
    model_name: str = "model",
    max_requests: int | None = None,
    explicit: Mapping[str, str] | None = None,
    pads: Mapping[str, Any] | None = None,
) -> list[InferRequest]:
    """Requests of up to ``batch_size`` rows of ``columns``; ``group_by`` keeps groups apart.

    ``explicit`` and ``pads`` are as for ``input_tensors``.
    """
    if not columns:
        raise DataError("the data has no columns")
    num_rows = len(next(iter(columns.values())))
    group_values = None
    if group_by is not None:
        if group_by not in columns:
            close = difflib.get_close_matches(group_by, list(columns), n=3)
            hint = f"; close column names: {', '.join(close)}" if close else ""
            raise DataError(f"--group-by column '{group_by}' is not in the data{hint}")
        group_values = np.asarray(columns[group_by])
    tensors = input_tensors(columns, signature, explicit, pads)
    slices = group_slices(group_values, num_rows, batch_size)
    if max_requests is not None:
        slices = slices[:max_requests]
    return [
        InferRequest(
            inputs={name: _take(tensor, rows) for name, tensor in tensors.items()},
            model_name=model_name,
            signature_name=signature.name,
        )
        for rows in slices
    ]


def _take(tensor: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of ``tensor``: a cheap view for a contiguous run, a copy otherwise."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and (np.diff(rows) == 1).all():
        return tensor[int(rows[0]) : int(rows[-1]) + 1]
    return tensor[rows]

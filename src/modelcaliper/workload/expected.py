"""Model errors: responses whose outputs are not finite, have the wrong shape, or are wrong.

A served model can answer every request with HTTP 200 and still be broken: NaN scores after a
bad export, a transposed output, a preprocessing difference between training and serving.
``OutputChecker`` compares each response with what the model should have said, either a
column of expected values (a label or a score stored with the training data) or the same
model run in-process on the same rows, within ``rtol``/``atol`` (``numpy.isclose``), and
counts three kinds of model error:

* ``model_nan`` — an output holds NaN or ±inf (checked even without expected values);
* ``model_shape`` — an output is missing or its shape differs from the expected one;
* ``model_mismatch`` — values differ from the expected ones beyond the tolerance.

``check(outputs, request_index)`` returns the errors of one response (one per output and
kind, naming how many values were affected) and keeps the first few of each kind as examples
(data row, an excerpt of the inputs, expected versus got) for the report. It is safe to call
from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import DType, InferRequest

__all__ = ["MODEL_ERROR_KINDS", "ModelError", "OutputChecker"]

MODEL_ERROR_KINDS = ("model_nan", "model_shape", "model_mismatch")
"""The kinds of model error, as they appear in records and reports."""

_EXCERPT_VALUES = 4
_EXCERPT_CHARS = 40
_EXCERPT_INPUTS = 6


@dataclass(frozen=True)
class ModelError:
    """One output of one response that is not what the model should have returned."""

    kind: str
    request_index: int
    output: str
    message: str
    row: int | None = None
    expected: str | None = None
    got: str | None = None
    inputs: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = asdict(self)
        out["inputs"] = dict(self.inputs) if self.inputs is not None else None
        return out


def _excerpt(value: Any) -> str:
    """A short, one-line rendering of a row's value."""
    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else repr(item)
        return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"
    flat = array.reshape(-1)
    shown = ", ".join(_excerpt(v) for v in flat[:_EXCERPT_VALUES])
    more = f", … ({flat.size} values)" if flat.size > _EXCERPT_VALUES else ""
    return f"[{shown}{more}]"


class OutputChecker:
    """Checks responses against expected outputs and counts model errors by kind."""

    def __init__(
        self,
        requests: Sequence[InferRequest],
        expected: Sequence[Mapping[str, np.ndarray]] | None = None,
        *,
        rows: Sequence[np.ndarray] | None = None,
        outputs: Sequence[TensorSpec] = (),
        rtol: float = 1e-5,
        atol: float = 1e-6,
        max_examples: int = 5,
    ) -> None:
        if expected is not None and len(expected) != len(requests):
            raise DataError(f"{len(expected)} sets of expected outputs for {len(requests)} "
                            "requests; give one per request")
        if rows is not None and len(rows) != len(requests):
            raise DataError(f"{len(rows)} row lists for {len(requests)} requests")
        if rtol < 0 or atol < 0:
            raise DataError(f"tolerances must be ≥ 0, got rtol={rtol} atol={atol}")
        self.requests = requests
        self.expected = expected
        self.rows = rows
        self.outputs = {spec.name: spec for spec in outputs}
        self.rtol = rtol
        self.atol = atol
        self.max_examples = max_examples
        self.counts = dict.fromkeys(MODEL_ERROR_KINDS, 0)
        self.examples: dict[str, list[ModelError]] = {kind: [] for kind in MODEL_ERROR_KINDS}
        self.checked = 0
        self._lock = threading.Lock()

    @classmethod
    def from_columns(
        cls,
        requests: Sequence[InferRequest],
        rows: Sequence[np.ndarray],
        expected_columns: Mapping[str, np.ndarray],
        *,
        positions: np.ndarray | None = None,
        **options: Any,
    ) -> OutputChecker:
        """Expected outputs from columns (output name → one value per row of the data).

        ``rows`` are each request's row indices into the columns; ``positions`` (the rows'
        numbers in the source, from ``SelectedRows.positions``) makes examples name source rows.
        """
        if not expected_columns:
            raise DataError("no expected-output columns given; name at least one output")
        expected = [
            {name: np.asarray(column)[np.asarray(request_rows)]
             for name, column in expected_columns.items()}
            for request_rows in rows
        ]
        shown = rows if positions is None else [np.asarray(positions)[r] for r in rows]
        return cls(requests, expected, rows=shown, **options)

    @classmethod
    def from_model(
        cls,
        requests: Sequence[InferRequest],
        predict: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
        **options: Any,
    ) -> OutputChecker:
        """Expected outputs computed now by ``predict`` (e.g. an in-process runtime's)."""
        expected = [dict(predict(request.inputs)) for request in requests]
        return cls(requests, expected, **options)

    @staticmethod
    def expected_columns(columns: Mapping[str, np.ndarray], signature: Signature,
                         output_map: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
        """Columns holding expected outputs: ``output_map`` (output → column), else same names."""
        from modelcaliper.workload.requests import match_columns

        names = list(output_map or [spec.name for spec in signature.outputs])
        specs = [s for s in signature.outputs if s.name in names] or [
            TensorSpec(n, DType.FP32) for n in names]
        mapping = match_columns(list(columns), Signature(tuple(specs)), output_map)
        return {output: np.asarray(columns[column]) for output, column in mapping.items()}

    def check(self, response_outputs: Mapping[str, np.ndarray],
              request_index: int) -> list[ModelError]:
        """The model errors of the response to request ``request_index`` (empty when fine)."""
        if not 0 <= request_index < len(self.requests):
            raise IndexError(f"request index {request_index} is outside 0..{len(self.requests)}")
        found: list[ModelError] = []
        expected = self.expected[request_index] if self.expected is not None else {}
        names = list(dict.fromkeys([*expected, *response_outputs]))
        for name in names:
            got = response_outputs.get(name)
            if got is None:
                found.append(self._error("model_shape", request_index, name,
                                         f"output '{name}' is missing from the response"))
                continue
            got = np.asarray(got)
            found.extend(self._check_output(request_index, name, got, expected.get(name)))
        with self._lock:
            self.checked += 1
            for error in found:
                self.counts[error.kind] += 1
                if len(self.examples[error.kind]) < self.max_examples:
                    self.examples[error.kind].append(error)
        return found

    def _check_output(self, index: int, name: str, got: np.ndarray,
                      want: np.ndarray | None) -> list[ModelError]:
        errors: list[ModelError] = []
        batch = self.requests[index].batch_size
        if got.dtype.kind in "fc":
            bad = ~np.isfinite(got)
            if bad.any():
                row = int(np.argwhere(bad)[0][0]) if got.ndim else 0
                errors.append(self._error(
                    "model_nan", index, name,
                    f"output '{name}' has {int(bad.sum())} NaN/inf value(s) of {got.size}",
                    row, got_value=got[row] if got.ndim else got))
        spec = self.outputs.get(name)
        if spec is not None and not _shape_fits(got.shape, spec.shape, batch):
            errors.append(self._error(
                "model_shape", index, name, f"output '{name}' has shape {list(got.shape)} but "
                f"the signature says {list(spec.shape)} for {batch} rows"))
            return errors
        if want is None:
            return errors
        want = np.asarray(want)
        if got.shape != want.shape:
            if got.size != want.size or _squeezed(got.shape) != _squeezed(want.shape):
                errors.append(self._error(
                    "model_shape", index, name, f"output '{name}' has shape {list(got.shape)}, "
                    f"expected {list(want.shape)}"))
                return errors
            got = got.reshape(want.shape)
        if got.dtype.kind in "fciub" and want.dtype.kind in "fciub":
            close = np.isclose(got, want, rtol=self.rtol, atol=self.atol, equal_nan=True)
            if got.dtype.kind in "fc":
                close |= ~np.isfinite(got)  # already counted as model_nan
        else:
            close = np.asarray(got == want)
        if not close.all():
            wrong = ~close
            row = int(np.argwhere(wrong)[0][0]) if wrong.ndim else 0
            errors.append(self._error(
                "model_mismatch", index, name,
                f"output '{name}' differs in {int(wrong.sum())} of {wrong.size} value(s) "
                f"beyond rtol={self.rtol:g} atol={self.atol:g}", row,
                want_value=want[row] if want.ndim else want, got_value=got[row] if got.ndim
                else got))
        return errors

    def _error(self, kind: str, index: int, output: str, message: str, row: int | None = None,
               *, want_value: Any = None, got_value: Any = None) -> ModelError:
        data_row = None
        inputs = None
        if row is not None:
            request = self.requests[index]
            if self.rows is not None and row < len(self.rows[index]):
                data_row = int(np.asarray(self.rows[index])[row])
            inputs = {k: _excerpt(v[row]) for k, v in list(request.inputs.items())[
                :_EXCERPT_INPUTS] if np.ndim(v) and row < len(v)}
        return ModelError(
            kind, index, output, message, data_row,
            None if want_value is None else _excerpt(want_value),
            None if got_value is None else _excerpt(got_value), inputs)

    def summary(self) -> dict[str, Any]:
        """Counts by kind, responses checked, and the kept examples, JSON-ready."""
        with self._lock:
            return {
                "checked": self.checked,
                "counts": dict(self.counts),
                "examples": {k: [e.to_dict() for e in v] for k, v in self.examples.items()},
            }


def _shape_fits(shape: tuple[int, ...], declared: tuple[int, ...], batch: int) -> bool:
    if len(shape) != len(declared):
        return False
    if declared and declared[0] == -1 and shape[0] != batch:
        return False
    return all(d in (-1, s) for d, s in zip(declared, shape, strict=True))


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)

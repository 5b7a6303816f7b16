"""Checking the model's answers during a run: model errors as their own kind of failure.

A response can be HTTP 200 and still wrong: NaN scores, a missing or misshapen output, or
values that differ from what the same model computes in-process on the same rows. With
``caliper run --check-outputs`` (or ``--expect-model``) every answer body is kept, decoded
with the request's codec and handed to ``workload.expected.OutputChecker``; a bad answer
becomes a ``MODEL_ERROR`` record whose kind (``model_nan``, ``model_shape``,
``model_mismatch``) and message say what was wrong, and the checker keeps examples for the
report. Checking costs the generator a decode per answer, so it is off by default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelcaliper.errors import CaliperError
from modelcaliper.load.transport import Outcome, PreparedRequest, Status
from modelcaliper.wire import get_codec

__all__ = ["AnswerCheck"]


class AnswerCheck:
    """The driver's answer check: decode each OK answer and let ``checker`` judge it."""

    def __init__(self, encoding: str, checker: Any) -> None:
        self.codec = get_codec(encoding)
        self.checker = checker

    def __call__(self, prepared: PreparedRequest, outcome: Outcome) -> Outcome:
        """``outcome``, or a MODEL_ERROR copy of it when the answer is not what it should be."""
        if outcome.body is None:
            return outcome
        try:
            response = self.codec.decode_response(outcome.body, dict(outcome.headers or {}))
        except CaliperError as exc:
            return replace(outcome, status=Status.MODEL_ERROR, error_kind="model_shape",
                           error_message=f"the answer cannot be decoded: {exc}", body=None)
        errors = self.checker.check(response.outputs, prepared.pool_index)
        if not errors:
            return replace(outcome, body=None)
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return replace(outcome, status=Status.MODEL_ERROR, error_kind=first.kind,
                       error_message=f"{first.message}{more}", body=None)

"""Payload analysis: what each wire encoding and compression costs for a model, and what-ifs."""

from __future__ import annotations

from modelcaliper.payload.analysis import (
    PayloadReport,
    PayloadRow,
    PayloadSettings,
    TimingPolicy,
    analyse_payload,
)
from modelcaliper.payload.render import render_report, write_json

__all__ = [
    "PayloadReport",
    "PayloadRow",
    "PayloadSettings",
    "TimingPolicy",
    "analyse_payload",
    "render_report",
    "write_json",
]

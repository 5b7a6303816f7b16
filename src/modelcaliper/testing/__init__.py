"""Test doubles for proving the load engine: a ground-truth server with known service times.

The server classes are imported on first use, so ``python -m modelcaliper.testing.groundtruth``
does not find its own module already imported by this package.
"""

from __future__ import annotations

from typing import Any

from modelcaliper.testing.truth import GroundTruthRecords, ServiceTime, Stalls

__all__ = [
    "GroundTruthProcess",
    "GroundTruthRecords",
    "GroundTruthServer",
    "ServiceTime",
    "Stalls",
]


def __getattr__(name: str) -> Any:
    """``GroundTruthServer`` and ``GroundTruthProcess``, imported lazily."""
    if name in ("GroundTruthServer", "GroundTruthProcess"):
        from modelcaliper.testing import groundtruth

        return getattr(groundtruth, name)
    raise AttributeError(f"module 'modelcaliper.testing' has no attribute '{name}'")

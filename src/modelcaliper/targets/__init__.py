"""Targets: the system under test, whether we start it, the user's command does, or it runs.

``EmbeddedServer`` starts ``caliper serve-model`` on free local ports, ``LaunchedServer``
runs the user's own command and waits for its readiness URL, ``ExistingServer`` is a server
already running. Each yields an ``Endpoint`` from ``open()`` and releases what it started in
``close()``. ``prometheus`` scrapes a target's metrics before and after a run.
"""

from __future__ import annotations

from modelcaliper.targets.base import Endpoint, Target, TargetBase
from modelcaliper.targets.remote import ExistingServer

__all__ = ["Endpoint", "ExistingServer", "Target", "TargetBase"]

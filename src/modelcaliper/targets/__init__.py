"""Targets: the system under test, whether we start it, the user's command does, or it runs.

``EmbeddedServer`` starts ``caliper serve-model`` on free local ports, ``LaunchedServer``
runs the user's own command and waits for its readiness URL, ``ExistingServer`` is a server
already running. Each yields an ``Endpoint`` from ``open()`` and releases what it started in
``close()``; each is a context manager. ``affinity`` pins the server and the load generator
to different CPUs; ``prometheus`` scrapes a target's metrics before and after a run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelcaliper.targets.base import Endpoint, Target, TargetBase
from modelcaliper.targets.remote import ExistingServer, detect_metrics_url

if TYPE_CHECKING:
    from modelcaliper.targets.affinity import CpuPlan, plan_cpus
    from modelcaliper.targets.embedded import EmbeddedServer
    from modelcaliper.targets.launched import LaunchedServer, ServerProcess
    from modelcaliper.targets.prometheus import MetricsScraper, scrape, server_histograms

# Imported on first use, so that importing the CLI (which needs only the base) stays fast.
_LAZY = {
    "CpuPlan": "affinity", "plan_cpus": "affinity",
    "EmbeddedServer": "embedded",
    "LaunchedServer": "launched", "ServerProcess": "launched",
    "MetricsScraper": "prometheus", "scrape": "prometheus", "server_histograms": "prometheus",
}

__all__ = [
    "CpuPlan",
    "EmbeddedServer",
    "Endpoint",
    "ExistingServer",
    "LaunchedServer",
    "MetricsScraper",
    "ServerProcess",
    "Target",
    "TargetBase",
    "detect_metrics_url",
    "plan_cpus",
    "scrape",
    "server_histograms",
]


def __getattr__(name: str) -> Any:
    """Import the lazily exported names on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelcaliper.targets' has no attribute {name!r}")
    return getattr(importlib.import_module(f"modelcaliper.targets.{module}"), name)

"""Sweeps: many configurations of one model, measured alike, compared, and one recommended.

    axes.py        the values of each knob (``--batch-size 5,10,25``, ``--rps auto``, ...)
    plan.py        their product as points, grouped by server, in a seeded order
    early_stop.py  stop a point once its percentile (or its SLO verdict) is known
    capacity.py    the highest rate within the SLO: exponential growth, then bisection; knee
    cost.py        client CPU per request and per candidate; server CPU from /proc
    link.py        a rate-limited network namespace for ``--link 100mbit``
    recommend.py   sustainable rate per configuration, ranking, the one-line why
    results.py     each run's key figures        document.py  ``sweep.json``
    runner.py      the sweep itself: points as stored runs, failures as data
    server.py      each configuration's server: started, restarted, watched
    render.py      the terminal lines and table

``caliper sweep`` (``cli/sweep.py``) is the command; docs/sweep.md the guide.
"""

from __future__ import annotations

from modelcaliper.sweep.axes import Axes, parse_axes
from modelcaliper.sweep.capacity import CapacityResult, SearchSettings, Step, search_capacity
from modelcaliper.sweep.early_stop import EarlyStop, StopRule
from modelcaliper.sweep.plan import Point, SweepPlan, build_plan
from modelcaliper.sweep.runner import SweepObserver, SweepOutcome, SweepSettings, run_sweep

__all__ = ["Axes", "CapacityResult", "EarlyStop", "Point", "SearchSettings", "Step",
           "StopRule", "SweepObserver", "SweepOutcome", "SweepPlan", "SweepSettings",
           "build_plan", "parse_axes", "run_sweep", "search_capacity"]

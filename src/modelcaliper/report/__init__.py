"""Reports of stored runs: the view data (``data``, ``compare``) and its HTML (``html``).

    run_view(folder, stored)          everything the Run view shows, as JSON-ready data
    compare_view([(folder, stored)])  the Compare view: first run is the baseline
    render_report(views, compare)     one self-contained HTML file (``caliper report --html``)

Views read only pre-aggregated artifacts of the run folder (docs/ui.md).
"""

from __future__ import annotations

from modelcaliper.report.compare import compare_view
from modelcaliper.report.data import run_view

__all__ = ["compare_view", "run_view"]

"""The ``caliper`` command line: a thin layer over the library, one module per subcommand.

The entry point is ``modelcaliper.cli.main.main``; each subcommand lives in its own module
listed in ``modelcaliper.cli.main.COMMANDS``.
"""

from __future__ import annotations

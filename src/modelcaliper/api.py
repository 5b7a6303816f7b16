"""The Python API: ``modelcaliper.run(...)``, the run ``caliper run`` does, returning its summary.

    import modelcaliper

    summary = modelcaliper.run("model.onnx", rps=100, duration="20s",
                               assertions=["p99<50ms"], tags=["notebook"])
    summary["latency_ms"]["p99"], summary["verdict"], summary["folder"]

Keyword arguments are ``caliper run``'s options by name (``batch_size``, ``candidates``,
``deadline``, ``server_cpus``, ...; docs/run.md lists them), values as a config file would
give them: numbers, text with units (``"250ms"``), booleans, lists for the repeatable ones.
Three names differ from the flags because Python reserves or prefers them: ``model`` is the
model *path* (``--model NAME`` is ``model_name``), ``assertions`` is ``--assert`` and
``tags`` is ``--tag``. The options are merged and validated exactly as on the command line
(``config.build_spec``) and the run goes through the same phases (``runner.execute``).

Input errors raise (``UsageError``, ``DataError``, ``TargetStartError``) before any load. A run
that went wrong after its load started returns its summary with ``status`` ``failed`` or
``interrupted`` and ``reason``; failed assertions show in ``verdict`` (``"fail"``) and
``assertions``. Nothing is printed unless ``progress=True``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["run"]

_ALIASES = {"model_name": "model", "assertions": "assert", "tags": "tag"}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(
    model: str | Path | None = None,
    *,
    target: str | None = None,
    protocol: str | None = None,
    model_name: str | None = None,
    data: str | Path | None = None,
    rps: float | None = None,
    duration: str | float | None = None,
    assertions: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    config: str | Path | None = None,
    store: bool = True,
    progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run one load test like ``caliper run`` and return its summary (``modelcaliper.run/1``)."""
    from modelcaliper.cli.progress import ProgressLine
    from modelcaliper.cli.run import build_run_parser
    from modelcaliper.config import apply_options, build_spec, load_config_file, option_table
    from modelcaliper.runner import execute

    parser = build_run_parser()
    table = option_table(parser)
    args = parser.parse_args([])
    if config is not None:
        apply_options(args, load_config_file(config), table, source=str(config))
    named: dict[str, Any] = {"model_path": model, "target": target, "protocol": protocol,
                             "model_name": model_name, "data": data, "rps": rps,
                             "duration": duration, "assertions": assertions, "tags": tags}
    given = {key: value for key, value in {**named, **options}.items() if value is not None}
    if not store:
        given["no_store"] = True
    given = {_ALIASES.get(key, key): value for key, value in given.items()}
    given = {key: str(value) if isinstance(value, Path) else value for key, value in given.items()}
    apply_options(args, given, table, source="modelcaliper.run()")
    spec = build_spec(args, table)
    outcome = execute(spec, say=_say if progress else None,
                      progress=ProgressLine() if progress else None)
    assert outcome.summary is not None
    return outcome.summary

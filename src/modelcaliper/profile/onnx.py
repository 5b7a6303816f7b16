"""ONNX Runtime session profiles → ``OpStat`` rows.

A session created with ``enable_profiling`` writes one JSON file when profiling ends: a
Chrome trace (a list of complete ``"ph": "X"`` events, microseconds), so it is kept as the
trace as it is. Events of category ``Node`` named ``<node>_kernel_time`` time one node's
kernel; their ``args`` carry the operator (``op_name``), the provider and the input shapes
(``input_type_shape``: ``[{"float": [25, 300]}, ...]``). ``Session`` events named
``model_run`` time whole predictions; the model-loading events at the start are not
predictions and are left out.

Node names are those of the graph ONNX Runtime ran: with graph optimizations on (the
default) fused nodes are renamed (``fused <name>``) and constant-folded ones disappear;
profile a session with optimizations disabled (``graph_optimization="disable"``) to see the
nodes under the names they have in the model file. A node without a name is reported as
``<op type>#<node index>``. Nodes inside a control-flow node's subgraph (``If``, ``Loop``,
``Scan``) run within its time on the same thread, so self time is computed by nesting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError
from modelcaliper.profile.base import (
    OpStat,
    ProfileResult,
    finish_result,
    merge_rows,
    nest_spans,
    scope_of,
)
from modelcaliper.profile.grouping import Grouper

__all__ = ["convert_onnx_profile", "format_shapes"]

RUNTIME = "onnxruntime"
_KERNEL_SUFFIX = "_kernel_time"
_MAX_SHAPES = 4


def format_shapes(type_shapes: Any) -> str:
    """``[{"float": [25, 300]}, {"int64": [25]}]`` as ``float[25,300] int64[25]``."""
    parts = []
    for item in type_shapes if isinstance(type_shapes, list) else ():
        if isinstance(item, Mapping):
            for dtype, dims in item.items():
                text = ",".join(str(d) for d in dims) if isinstance(dims, list) else "?"
                parts.append(f"{dtype}[{text}]")
    return " ".join(parts)


def _load_events(path: Path) -> list[Mapping[str, Any]]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"ONNX Runtime profile {path} does not exist") from None
    except orjson.JSONDecodeError as exc:
        raise DataError(f"ONNX Runtime profile {path} is not valid JSON ({exc}); the file is "
                        "corrupt or was cut short") from None
    if isinstance(data, Mapping):  # a Chrome trace object rather than the bare event list
        data = data.get("traceEvents")
    if not isinstance(data, list):
        raise DataError(f"ONNX Runtime profile {path} is not a list of trace events")
    return [event for event in data if isinstance(event, Mapping)]


def convert_onnx_profile(
    path: str | Path,
    *,
    grouper: Grouper | None = None,
    label: str = "",
    batch_size: int | None = None,
    predictions: int | None = None,
    window_s: float | None = None,
    wall_us: float | None = None,
    skip_runs: int = 0,
) -> ProfileResult:
    """The ``ProfileResult`` of ONNX Runtime's profile JSON at ``path``.

    The first ``skip_runs`` predictions are left out (a profiling session is a fresh session,
    whose first runs still settle). ``wall_us`` defaults to the summed ``model_run`` time.
    DataError for a missing, corrupt or empty profile (one in which no prediction ran).
    """
    path = Path(path)
    events = _load_events(path)
    runs_at = sorted((_number(e.get("ts"), path), _number(e.get("dur"), path)) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")
    skipped, counted = runs_at[:max(0, skip_runs)], runs_at[max(0, skip_runs):]
    cutoff_us = skipped[-1][0] + skipped[-1][1] if skipped else float("-inf")
    runs_us, runs = sum(d for _, d in counted), len(counted)
    kernels: dict[tuple[Any, Any], list[Mapping[str, Any]]] = defaultdict(list)
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith(_KERNEL_SUFFIX) \
                and _number(event.get("ts"), path) >= cutoff_us:
            kernels[(event.get("pid"), event.get("tid"))].append(event)
    if not kernels:
        raise DataError(f"ONNX Runtime profile {path} holds no node timings: no prediction "
                        "ran while profiling (an empty capture window)")
    rows = []
    for thread_events in kernels.values():
        thread_events.sort(key=lambda e: _number(e.get("ts"), path))
        spans = [(_number(e.get("ts"), path), _number(e.get("dur"), path))
                 for e in thread_events]
        own, _ = nest_spans(spans)
        for event, (_, duration_us), self_us in zip(thread_events, spans, own, strict=True):
            rows.append(_row(event, duration_us, self_us))
    result = ProfileResult(
        runtime=RUNTIME, ops=tuple(_cap_shapes(merge_rows(rows))), label=label,
        batch_size=batch_size, predictions=predictions if predictions is not None else runs,
        window_s=window_s, wall_us=wall_us if wall_us is not None else runs_us,
        raw_path=str(path), trace_path=str(path),
    )
    return finish_result(result, grouper or Grouper())


def _number(value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"ONNX Runtime profile {path} has an event with a non-numeric time "
                        f"({value!r}); the file is corrupt")
    return float(value)


def _row(event: Mapping[str, Any], duration_us: float, self_us: float) -> OpStat:
    args = event.get("args") if isinstance(event.get("args"), Mapping) else {}
    assert isinstance(args, Mapping)
    op_type = str(args.get("op_name") or "?")
    name = str(event["name"])[: -len(_KERNEL_SUFFIX)]
    if name.strip() in ("", "fused"):  # a node without a name (fused or not)
        name = f"{op_type}#{args.get('node_index', '?')}"
    shapes = format_shapes(args.get("input_type_shape"))
    return OpStat(name=name, op_type=op_type, calls=1, total_us=duration_us, self_us=self_us,
                  scope=scope_of(name), input_shapes=(shapes,) if shapes else ())


def _cap_shapes(rows: list[OpStat]) -> list[OpStat]:
    """Keep the first few distinct input shapes of each row (batch sizes vary under load)."""
    return [replace(r, input_shapes=r.input_shapes[:_MAX_SHAPES]) for r in rows]

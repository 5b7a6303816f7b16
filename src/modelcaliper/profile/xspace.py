"""Reading TensorFlow's raw profile (``*.xplane.pb``, an ``XSpace``) for what the op table misses.

TensorFlow's profiler writes one ``XSpace`` per capture: planes (``/host:CPU`` holds the
CPU work) of lines (threads) of events (spans with a name, an offset and a duration in
picoseconds, and typed stats). Three kinds of host events matter here:

- **op events**, named ``<op name>:<op type>``, one per traced kernel execution;
- **executor events**, ``ExecutorState::Process``, one per batch of graph nodes the executor
  ran, with the ``id`` of the function call (step) they belong to and ``iter_num``, the loop
  iteration of the first node (0 outside loops);
- **function calls**: ``EagerLocalExecute: __inference_<function>_<n>`` on the calling thread,
  holding a ``FunctionRun`` event with the same ``id`` as the call's executor events.

TensorFlow's executor times an op only while it counts as expensive; once an op's running
cost estimate falls under about 8000 CPU cycles (after some 90 executions of a cheap op) it
is run inline and never traced again. In a warmed-up model the small ops of a Python-built
feature chain or of a ``tf.map_fn`` body therefore leave no op events: their time is the
executor events' *self* time (their duration minus the op events inside them). ``scan``
collects that time by function call, split into loop iterations (``iter_num`` > 0) and the
rest, so it can be reported rather than lost.

``write_chrome_trace`` turns the whole space into Chrome trace JSON for Perfetto.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError
from modelcaliper.profile.base import nest_spans

__all__ = ["XSpaceScan", "function_name", "load_xspace", "scan", "write_chrome_trace"]

_PROCESS = "ExecutorState::Process"
_FUNCTION_RUN = "FunctionRun"
_CALL_PREFIX = "EagerLocalExecute: "
_INFERENCE = re.compile(r"^__inference_(?:signature_wrapper_)?(?P<name>.+?)(?:_\d+)?$")


def function_name(raw: str) -> str:
    """``__inference_signature_wrapper_transform_526`` → ``transform``; others unchanged."""
    match = _INFERENCE.match(raw)
    return match.group("name") if match else raw


def load_xspace(path: Path) -> Any:
    """The ``XSpace`` message in ``path``; DataError if the file is not one."""
    from modelcaliper.server.runtimes.base import import_optional

    module = import_optional("tensorflow.tsl.profiler.protobuf.xplane_pb2", "tensorflow",
                             "reading a TensorFlow profile")
    from google.protobuf.message import DecodeError

    space = module.XSpace()
    try:
        space.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise DataError(f"TensorFlow profile {path} is corrupt: not an XSpace protobuf "
                        f"({type(exc).__name__})") from None
    return space


@dataclass
class XSpaceScan:
    """What ``scan`` found: op → functions, untraced executor time, calls; times in µs."""

    op_functions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    untraced_us: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    untraced_loop_us: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wall_us: float = 0.0
    op_events: int = 0
    executor_events: int = 0

    @property
    def empty(self) -> bool:
        """Whether no op and no executor work was recorded (nothing ran in the window)."""
        return self.op_events == 0 and self.executor_events == 0


@dataclass
class _Line:
    names: list[str]
    types: list[str]
    spans: list[tuple[float, float]]
    stats: list[dict[str, Any]]


def _lines(space: Any, wanted_stats: Sequence[str]) -> Iterator[_Line]:
    """Each host line's events in start order, with names, op types and the wanted stats."""
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names_of = {mid: (meta.name, meta.display_name)
                    for mid, meta in plane.event_metadata.items()}
        stat_ids = {sid: meta.name for sid, meta in plane.stat_metadata.items()
                    if meta.name in wanted_stats}
        for line in plane.lines:
            events = sorted(line.events, key=lambda e: e.offset_ps)
            names, types, spans, stats = [], [], [], []
            for event in events:
                name, op_type = names_of[event.metadata_id]
                names.append(name)
                types.append(op_type)
                spans.append((event.offset_ps / 1e6, event.duration_ps / 1e6))
                found = {}
                if len(event.stats):  # most op events carry none
                    for stat in event.stats:
                        key = stat_ids.get(stat.metadata_id)
                        if key is not None:
                            found[key] = getattr(stat, stat.WhichOneof("value") or "int64_value")
                stats.append(found)
            yield _Line(names, types, spans, stats)


def scan(spaces: Sequence[Any]) -> XSpaceScan:
    """Op functions, untraced executor time and call counts of ``spaces`` (see module doc)."""
    out = XSpaceScan()
    step_function: dict[int, str] = {}
    executor: list[tuple[int, bool, float]] = []  # (step, in a loop iteration, self µs)
    ops: list[tuple[str, int]] = []  # (op name, step) for ops inside an executor event
    for space in spaces:
        for line in _lines(space, ("id", "iter_num", "tf_function_call")):
            own, parents = nest_spans(line.spans)
            for i, name in enumerate(line.names):
                op_type = line.types[i]
                if name == _PROCESS:
                    out.executor_events += 1
                    step = line.stats[i].get("id")
                    if step is not None:
                        executor.append((step, bool(line.stats[i].get("iter_num")), own[i]))
                elif op_type and name.endswith(f":{op_type}"):
                    out.op_events += 1
                    step = _enclosing_step(line, parents, i)
                    if step is not None:
                        ops.append((name[: -len(op_type) - 1], step))
                elif name == _FUNCTION_RUN and "id" in line.stats[i]:
                    caller = _enclosing(line, parents, i, lambda n: n.startswith(_CALL_PREFIX))
                    if caller is not None:
                        called = function_name(line.names[caller][len(_CALL_PREFIX):])
                        step_function[line.stats[i]["id"]] = called
                        out.calls[called] += 1
                elif "tf_function_call" in line.stats[i] and not _inside_call(line, parents, i):
                    out.wall_us += line.spans[i][1]
    for step, in_loop, self_us in executor:
        function = step_function.get(step, "")
        (out.untraced_loop_us if in_loop else out.untraced_us)[function] += self_us
    for op_name, step in ops:
        if step in step_function:
            out.op_functions[op_name].add(step_function[step])
    return out


def _enclosing(line: _Line, parents: list[int], index: int, test: Any) -> int | None:
    parent = parents[index]
    while parent >= 0:
        if test(line.names[parent]):
            return parent
        parent = parents[parent]
    return None


def _enclosing_step(line: _Line, parents: list[int], index: int) -> int | None:
    found = _enclosing(line, parents, index, lambda n: n == _PROCESS)
    return None if found is None else line.stats[found].get("id")


def _inside_call(line: _Line, parents: list[int], index: int) -> bool:
    parent = parents[index]
    while parent >= 0:
        if "tf_function_call" in line.stats[parent]:
            return True
        parent = parents[parent]
    return False


def write_chrome_trace(spaces: Sequence[Any], path: Path) -> Path:
    """Write every event of ``spaces`` as Chrome trace JSON (µs, ``ph: X``) to ``path``."""
    from modelcaliper.store._files import atomic_write

    events: list[dict[str, Any]] = []
    starts = [line.timestamp_ns for space in spaces for plane in space.planes
              for line in plane.lines if line.events]
    origin_ns = min(starts, default=0)
    pid = 0
    for space in spaces:
        for plane in space.planes:
            if not any(line.events for line in plane.lines):
                continue
            pid += 1
            events.append({"ph": "M", "name": "process_name", "pid": pid,
                           "args": {"name": plane.name}})
            metadata, stat_names = plane.event_metadata, plane.stat_metadata
            for tid, line in enumerate(plane.lines, start=1):
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                               "args": {"name": line.display_name or line.name}})
                base_us = (line.timestamp_ns - origin_ns) / 1e3
                for event in line.events:
                    item: dict[str, Any] = {
                        "ph": "X", "pid": pid, "tid": tid,
                        "name": metadata[event.metadata_id].name,
                        "ts": round(base_us + event.offset_ps / 1e6, 3),
                        "dur": round(event.duration_ps / 1e6, 3),
                    }
                    if event.stats:
                        item["args"] = {stat_names[s.metadata_id].name: _stat_value(s, stat_names)
                                        for s in event.stats}
                    events.append(item)
    document = {"displayTimeUnit": "ns", "traceEvents": events}
    atomic_write(path, orjson.dumps(document))
    return path


def _stat_value(stat: Any, stat_names: Any) -> Any:
    kind = stat.WhichOneof("value")
    if kind == "ref_value":
        return stat_names[stat.ref_value].name
    if kind == "bytes_value":
        return stat.bytes_value.hex()
    return getattr(stat, kind) if kind else None

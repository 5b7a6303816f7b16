"""TensorFlow profiles (``tf.profiler`` captures) → ``OpStat`` rows and a Chrome trace.

A capture is a TensorBoard log directory: ``<logdir>/plugins/profile/<run>/<host>.xplane.pb``,
which TensorBoard's profile plugin opens as it is. ``convert_tf_profile`` turns it into
rows in two steps:

1. **Traced ops**, from TensorFlow's own ``framework_op_stats`` tool (the table TensorBoard
   shows under "TensorFlow Stats"), run through the profiler bindings
   (``_pywrap_profiler_plugin.xspace_to_tools_data``): one row per op name with its type,
   occurrences, total and self time.
2. **Untraced time**, from the raw ``XSpace`` (``modelcaliper.profile.xspace``): TensorFlow
   stops timing ops it has found cheap, so after warm-up the many small ops of a feature
   chain or of a ``tf.map_fn`` body leave no op rows. The executor time they took is added
   per function as ``<function>/(untraced ops and executor)`` and, for loop iterations, as a
   row named after the loop (``.../map/while``, type ``While (untraced body)``) when the
   SavedModel is at hand to name its loops (``savedmodel_loops``), or
   ``<function>/(untraced loop iterations)`` when it is not (a remote server).

The XSpace scan also tells which function each op ran in, so that ops of a ``transform``
signature are grouped as ``transform`` (see ``modelcaliper.profile.grouping``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError
from modelcaliper.profile.base import TRACE_FILE, OpStat, ProfileResult, finish_result, scope_of
from modelcaliper.profile.grouping import Grouper
from modelcaliper.profile.xspace import (
    XSpaceScan,
    function_name,
    load_xspace,
    scan,
    write_chrome_trace,
)
from modelcaliper.server.runtimes.base import import_optional

__all__ = ["Loop", "convert_tf_profile", "find_xplanes", "framework_op_rows",
           "savedmodel_loops"]

RUNTIME = "tensorflow"
UNTRACED_OPS = "(untraced ops and executor)"
UNTRACED_LOOPS = "(untraced loop iterations)"
LOOP_TYPE = "While (untraced body)"
_LOOP_OPS = ("While", "StatelessWhile")
_CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")
_WRAPPER = "__inference_signature_wrapper_"


@dataclass(frozen=True)
class Loop:
    """A ``while`` loop of a function: its op name at run time and the op types of its body."""

    name: str
    body_types: tuple[str, ...]


def find_xplanes(path: str | Path) -> list[Path]:
    """The ``*.xplane.pb`` files of one capture: in ``path`` itself, or in the newest run of a
    TensorBoard log directory (``plugins/profile/<run>/``); DataError when there are none."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"TensorFlow profile {root} does not exist")
    files = sorted(root.glob("*.xplane.pb"))
    if not files:
        runs = [d for d in (root / "plugins" / "profile").glob("*") if d.is_dir()
                and any(d.glob("*.xplane.pb"))]
        if runs:
            newest = max(runs, key=lambda d: max(f.stat().st_mtime_ns for f in d.iterdir()))
            files = sorted(newest.glob("*.xplane.pb"))
    if not files:
        raise DataError(f"{root} holds no TensorFlow profile (no *.xplane.pb here or under "
                        "plugins/profile/<run>/): the capture wrote nothing")
    return files


def framework_op_rows(files: Sequence[Path]) -> list[dict[str, Any]]:
    """TensorFlow's ``framework_op_stats`` table of ``files`` as dicts keyed by column id."""
    plugin = import_optional("tensorflow.python.profiler.internal._pywrap_profiler_plugin",
                             "tensorflow", "converting a TensorFlow profile")
    data, ok = plugin.xspace_to_tools_data([str(f) for f in files], "framework_op_stats", {})
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    if not ok:
        raise DataError(f"TensorFlow cannot read the profile {files[0]}: {text.strip()}")
    try:
        tables = orjson.loads(text)
        table = tables[0]
        ids = [column["id"] for column in table["cols"]]
        rows = [dict(zip(ids, (cell.get("v") for cell in row["c"]), strict=False))
                for row in table.get("rows", ())]
    except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
        raise DataError(f"TensorFlow's op table for {files[0]} is not in the expected form "
                        f"({type(exc).__name__}); is this TensorFlow version supported?") from None
    return [row for row in rows if row.get("type") != "IDLE"]


def savedmodel_loops(model_dir: str | Path) -> dict[str, list[Loop]]:
    """The top-level loops each function of a SavedModel runs, by function name (as
    ``xspace.function_name`` gives it), read from ``saved_model.pb`` without loading it."""
    saved_model_pb2 = import_optional("tensorflow.core.protobuf.saved_model_pb2", "tensorflow",
                                      "reading a SavedModel's loops")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((Path(model_dir) / "saved_model.pb").read_bytes())
    except Exception:  # an unreadable graph only costs the loop names
        return {}
    library = {f.signature.name: f for meta in saved.meta_graphs
               for f in meta.graph_def.library.function}
    found: dict[str, list[Loop]] = defaultdict(list)
    # Signature wrappers first: they are what a served model calls, and an inner function
    # of the same short name (``serve`` inside ``signature_wrapper_serve``) must not add its
    # loops a second time under other names.
    wrappers = [n for n in library if n.startswith(_WRAPPER)]
    for name in wrappers:
        found[function_name(name)].extend(_loops_of(library, name, "", set()))
    for name in library:
        if name not in wrappers and function_name(name) not in found:
            loops = _loops_of(library, name, "", set())
            if loops:
                found[function_name(name)].extend(loops)
    return {name: list(dict.fromkeys(loops)) for name, loops in found.items() if loops}


def _loops_of(library: Mapping[str, Any], name: str, prefix: str, seen: set[str]) -> list[Loop]:
    """Loops reachable from function ``name`` through calls (not through loop bodies)."""
    if name in seen or name not in library:
        return []
    seen = seen | {name}
    loops = []
    for node in library[name].node_def:
        if node.op in _LOOP_OPS:
            body = node.attr["body"].func.name
            loops.append(Loop(f"{prefix}{node.name}", tuple(sorted(_types_of(library, body,
                                                                          set())))))
        elif node.op in _CALL_OPS:
            loops += _loops_of(library, node.attr["f"].func.name, f"{prefix}{node.name}/", seen)
        elif node.op in library:
            loops += _loops_of(library, node.op, f"{prefix}{node.name}/", seen)
    return loops


def _types_of(library: Mapping[str, Any], name: str, seen: set[str]) -> set[str]:
    """Every op type run by function ``name``, through calls and nested loops."""
    if name in seen or name not in library:
        return set()
    seen.add(name)
    types: set[str] = set()
    for node in library[name].node_def:
        types.add(node.op)
        for key in ("f", "body", "cond", "then_branch", "else_branch"):
            if key in node.attr and node.attr[key].func.name:
                types |= _types_of(library, node.attr[key].func.name, seen)
        if node.op in library:
            types |= _types_of(library, node.op, seen)
    return {t for t in types if t not in library}


def convert_tf_profile(
    path: str | Path,
    *,
    grouper: Grouper | None = None,
    model_path: str | Path | None = None,
    trace_path: str | Path | None = None,
    label: str = "",
    batch_size: int | None = None,
    predictions: int | None = None,
    window_s: float | None = None,
    wall_us: float | None = None,
) -> ProfileResult:
    """The ``ProfileResult`` of a TensorFlow capture at ``path`` (see the module docstring).

    ``model_path`` (the SavedModel) names the loops of untraced loop time; ``trace_path``
    (default: ``trace.json`` beside the log directory's run) receives the Chrome trace.
    DataError for a missing, corrupt or empty capture.
    """
    files = find_xplanes(path)
    spaces = [load_xspace(f) for f in files]
    table = framework_op_rows(files)
    found = scan(spaces)
    if found.empty and not table:
        raise DataError(f"TensorFlow profile {files[0].parent} holds no op or executor "
                        "events: no prediction ran while profiling (an empty capture window)")
    loops = savedmodel_loops(model_path) if model_path is not None else {}
    rows = [_traced_row(row, found) for row in table] + _untraced_rows(found, loops)
    trace = Path(trace_path) if trace_path is not None else files[0].parent / TRACE_FILE
    write_chrome_trace(spaces, trace)
    result = ProfileResult(
        runtime=RUNTIME, ops=tuple(rows), label=label, batch_size=batch_size,
        predictions=predictions, window_s=window_s,
        wall_us=wall_us if wall_us is not None else found.wall_us,
        raw_path=str(files[0].parent), trace_path=str(trace),
    )
    return finish_result(result, grouper or Grouper())


def _traced_row(row: Mapping[str, Any], found: XSpaceScan) -> OpStat:
    name = str(row.get("operation") or "?")
    functions = found.op_functions.get(name, set())
    return OpStat(
        name=name, op_type=str(row.get("type") or "?"), calls=int(row.get("occurrences") or 0),
        total_us=float(row.get("total_time") or 0.0),
        self_us=float(row.get("total_self_time") or 0.0), scope=scope_of(name),
        function=next(iter(functions)) if len(functions) == 1 else None,
    )


def _untraced_rows(found: XSpaceScan, loops: Mapping[str, list[Loop]]) -> list[OpStat]:
    rows = []
    for function, self_us in found.untraced_us.items():
        if self_us > 0:
            rows.append(_untraced(f"{function or '?'}/{UNTRACED_OPS}", "(untraced)", function,
                                  found, self_us))
    for function, self_us in found.untraced_loop_us.items():
        if self_us <= 0:
            continue
        known = loops.get(function, [])
        if len(known) == 1:
            name, body = known[0].name, known[0].body_types
        elif known:
            name = f"{_common_scope([loop.name for loop in known])}/{UNTRACED_LOOPS}".lstrip("/")
            body = tuple(sorted({t for loop in known for t in loop.body_types}))
        else:
            name, body = f"{function or '?'}/{UNTRACED_LOOPS}", ()
        rows.append(_untraced(name, LOOP_TYPE, function, found, self_us, body))
    return rows


def _untraced(name: str, op_type: str, function: str, found: XSpaceScan, self_us: float,
              body_types: tuple[str, ...] = ()) -> OpStat:
    return OpStat(name=name, op_type=op_type, calls=found.calls.get(function, 0),
                  total_us=self_us, self_us=self_us, scope=scope_of(name),
                  function=function or None, traced=False, body_types=body_types)


def _common_scope(names: Sequence[str]) -> str:
    split = [n.split("/") for n in names]
    common = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)

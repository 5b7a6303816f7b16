"""The one profile format every runtime converts to: ``OpStat`` rows in a ``ProfileResult``.

An ``OpStat`` is one operation of the model aggregated over the capture: its name (the node
or op name the runtime reports), type, scope (the name without its last part and without
TensorFlow's call wrappers), the function it ran in when known, its group (see
``modelcaliper.profile.grouping``), the number of calls, total and self time in
microseconds (self time leaves out ops nested inside it), the mean time per call, its share
of the profile's total self time, and its input shapes when the runtime records them.

Rows with ``traced`` false stand for time the runtime spent without timing an op: TensorFlow
stops timing an op once it has measured it as cheap (see ``modelcaliper.profile.tensorflow``),
so the executor time left over is reported as an ``(untraced ...)`` row of its function or
loop rather than dropped. Shares always add up to 1 over all rows.

A ``ProfileResult`` holds the rows of one capture plus where its files are
(``raw_path``: the TensorBoard log directory or ONNX Runtime's JSON, ``trace_path``: a
Chrome trace JSON for Perfetto), what was captured (``batch_size`` and ``predictions`` in
isolated mode, ``window_s`` under load), ``wall_us``, the time the model calls took (op
time is part of it; the rest is the runtime's per-call work outside its ops), and, in
isolated mode, ``overhead_ratio``: profiled over unprofiled time per prediction.
It is stored as ``profile.json`` (format ``modelcaliper.profile/1``). When no profile could
be taken, a ``MissingProfile`` says why, and the run keeps its other results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError
from modelcaliper.profile.grouping import Grouper, split_name

__all__ = [
    "FORMAT",
    "GroupShare",
    "MissingProfile",
    "OpStat",
    "PROFILE_FILE",
    "ProfileResult",
    "ProfileSummary",
    "finish_result",
    "merge_rows",
    "nest_spans",
    "read_profile",
    "scope_of",
    "self_times",
    "write_profile",
]

FORMAT = "modelcaliper.profile/1"
PROFILE_FILE = "profile.json"
TRACE_FILE = "trace.json"
DEFAULT_TOP_N = 10


@dataclass(frozen=True)
class OpStat:
    """One operation aggregated over a capture; times in microseconds."""

    name: str
    op_type: str
    calls: int
    total_us: float
    self_us: float
    group: str = ""
    scope: str = ""
    function: str | None = None
    input_shapes: tuple[str, ...] = ()
    share: float = 0.0
    traced: bool = True
    body_types: tuple[str, ...] = ()

    @property
    def mean_us(self) -> float:
        """Mean total time per call."""
        return self.total_us / self.calls if self.calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; empty optional fields are left out."""
        out: dict[str, Any] = {
            "name": self.name, "op_type": self.op_type, "group": self.group,
            "scope": self.scope, "calls": self.calls, "total_us": round(self.total_us, 3),
            "self_us": round(self.self_us, 3), "mean_us": round(self.mean_us, 3),
            "share": round(self.share, 6),
        }
        if self.function is not None:
            out["function"] = self.function
        if self.input_shapes:
            out["input_shapes"] = list(self.input_shapes)
        if not self.traced:
            out["traced"] = False
        if self.body_types:
            out["body_types"] = list(self.body_types)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpStat:
        """The row ``to_dict`` wrote."""
        return cls(
            name=str(data["name"]), op_type=str(data["op_type"]), calls=int(data["calls"]),
            total_us=float(data["total_us"]), self_us=float(data["self_us"]),
            group=str(data.get("group", "")), scope=str(data.get("scope", "")),
            function=data.get("function"), input_shapes=tuple(data.get("input_shapes", ())),
            share=float(data.get("share", 0.0)), traced=bool(data.get("traced", True)),
            body_types=tuple(data.get("body_types", ())),
        )


@dataclass(frozen=True)
class GroupShare:
    """The self time of one group and its share of the total."""

    group: str
    self_us: float
    share: float
    ops: int


@dataclass(frozen=True)
class ProfileSummary:
    """Total self time, time by group (largest first) and the top ops of a profile."""

    total_us: float
    groups: tuple[GroupShare, ...]
    top: tuple[OpStat, ...]

    @property
    def top_group(self) -> str | None:
        """The group with the most self time (None for an empty profile)."""
        return self.groups[0].group if self.groups else None

    def share_of(self, group: str) -> float:
        """The share of total self time spent in ``group`` (0 when it has no ops)."""
        return next((g.share for g in self.groups if g.group == group), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``top`` lists op names, the rows themselves are in ``ops``."""
        return {
            "total_us": round(self.total_us, 3),
            "groups": [{"group": g.group, "self_us": round(g.self_us, 3),
                        "share": round(g.share, 6), "ops": g.ops} for g in self.groups],
            "top_group": self.top_group,
            "top": [op.name for op in self.top],
        }


@dataclass(frozen=True)
class ProfileResult:
    """The op profile of one capture, with where its raw files are and what it covered."""

    runtime: str
    ops: tuple[OpStat, ...]
    label: str = ""
    batch_size: int | None = None
    predictions: int | None = None
    window_s: float | None = None
    wall_us: float | None = None
    overhead_ratio: float | None = None
    raw_path: str | None = None
    trace_path: str | None = None
    rules: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def total_us(self) -> float:
        """Self time of all rows together."""
        return sum(op.self_us for op in self.ops)

    def summary(self, top_n: int = DEFAULT_TOP_N) -> ProfileSummary:
        """Time by group and the ``top_n`` ops with the most self time."""
        total = self.total_us
        by_group: dict[str, list[float]] = {}
        for op in self.ops:
            by_group.setdefault(op.group, []).append(op.self_us)
        groups = sorted(
            (GroupShare(g, sum(t), sum(t) / total if total else 0.0, len(t))
             for g, t in by_group.items()),
            key=lambda g: (-g.self_us, g.group),
        )
        return ProfileSummary(total, tuple(groups), self.ops[:max(0, top_n)])

    def op(self, name: str) -> OpStat | None:
        """The row named ``name``, if any."""
        return next((op for op in self.ops if op.name == name), None)

    def regrouped(self, grouper: Grouper) -> ProfileResult:
        """The same rows with groups assigned again by ``grouper`` (e.g. with user rules)."""
        return finish_result(self, grouper)

    def to_dict(self, top_n: int = DEFAULT_TOP_N) -> dict[str, Any]:
        """The ``modelcaliper.profile/1`` document: facts, summary, every row."""
        facts = {
            "format": FORMAT, "status": "ok", "runtime": self.runtime, "label": self.label,
            "batch_size": self.batch_size, "predictions": self.predictions,
            "window_s": self.window_s,
            "wall_us": None if self.wall_us is None else round(self.wall_us, 3),
            "overhead_ratio": self.overhead_ratio,
            "raw_path": self.raw_path, "trace_path": self.trace_path,
            "rules": list(self.rules), "notes": list(self.notes),
        }
        return {**facts, "summary": self.summary(top_n).to_dict(),
                "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileResult:
        """The result ``to_dict`` wrote; DataError for another document."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT \
                or data.get("status") != "ok":
            raise DataError(f"not a {FORMAT} profile document (format "
                            f"{data.get('format') if isinstance(data, Mapping) else None!r})")
        try:
            ops = tuple(OpStat.from_dict(row) for row in data.get("ops", ()))
            return cls(
                runtime=str(data["runtime"]), ops=ops, label=str(data.get("label") or ""),
                batch_size=data.get("batch_size"), predictions=data.get("predictions"),
                window_s=data.get("window_s"), wall_us=data.get("wall_us"),
                overhead_ratio=data.get("overhead_ratio"),
                raw_path=data.get("raw_path"), trace_path=data.get("trace_path"),
                rules=tuple(data.get("rules", ())), notes=tuple(data.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{FORMAT} profile document has a malformed row or field: "
                            f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class MissingProfile:
    """No profile for this run, and why; the run's other results stand."""

    reason: str
    raw_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"format", "status": "missing", "reason", "raw_path"}``."""
        return {"format": FORMAT, "status": "missing", "reason": self.reason,
                "raw_path": self.raw_path}


def finish_result(result: ProfileResult, grouper: Grouper) -> ProfileResult:
    """``result`` with groups assigned, shares of the total set and rows sorted by self time."""
    total = result.total_us
    ops = [
        replace(op, group=grouper.group_of(op.name, op.op_type, op.function, traced=op.traced,
                                           body_types=op.body_types),
                share=op.self_us / total if total else 0.0)
        for op in result.ops
    ]
    ops.sort(key=lambda op: (-op.self_us, op.name))
    return replace(result, ops=tuple(ops), rules=tuple(grouper.describe()))


def nest_spans(spans: Sequence[tuple[float, float]]) -> tuple[list[float], list[int]]:
    """Self time and parent of each ``(start, duration)`` span on one thread.

    Spans must be sorted by start. A span's parent is the innermost span enclosing it (-1 for
    none); its self time is its duration minus the durations of the spans directly inside it.
    """
    own = [duration for _, duration in spans]
    parents = [-1] * len(spans)
    stack: list[int] = []  # the spans enclosing the current one, innermost last
    for index, (start, duration) in enumerate(spans):
        while stack and start >= spans[stack[-1]][0] + spans[stack[-1]][1]:
            stack.pop()
        if stack:
            parents[index] = stack[-1]
            own[stack[-1]] -= duration
        stack.append(index)
    return [max(0.0, value) for value in own], parents


def self_times(spans: Sequence[tuple[float, float]]) -> list[float]:
    """Self time of each ``(start, duration)`` span on one thread (see ``nest_spans``)."""
    return nest_spans(spans)[0]


def scope_of(name: str) -> str:
    """The scope of an op name: its parts but the last, without call wrappers."""
    return "/".join(split_name(name)[:-1])


def merge_rows(rows: Iterable[OpStat]) -> list[OpStat]:
    """Rows of the same name and type summed into one (calls, times; shapes kept distinct)."""
    merged: dict[tuple[str, str], OpStat] = {}
    for row in rows:
        key = (row.name, row.op_type)
        seen = merged.get(key)
        if seen is None:
            merged[key] = row
            continue
        shapes = tuple(dict.fromkeys((*seen.input_shapes, *row.input_shapes)))
        function = seen.function if seen.function == row.function else None
        merged[key] = replace(seen, calls=seen.calls + row.calls,
                              total_us=seen.total_us + row.total_us,
                              self_us=seen.self_us + row.self_us,
                              input_shapes=shapes, function=function)
    return list(merged.values())


def write_profile(result: ProfileResult | MissingProfile, directory: str | Path,
                  top_n: int = DEFAULT_TOP_N) -> Path:
    """Write ``directory/profile.json`` atomically and return its path."""
    from modelcaliper.store._files import atomic_write

    document = result.to_dict(top_n) if isinstance(result, ProfileResult) else result.to_dict()
    target = Path(directory) / PROFILE_FILE
    atomic_write(target, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return target


def read_profile(path: str | Path) -> ProfileResult | MissingProfile:
    """A stored ``profile.json`` (or the directory holding one); DataError if unreadable."""
    target = Path(path)
    if target.is_dir():
        target = target / PROFILE_FILE
    try:
        data = orjson.loads(target.read_bytes())
    except FileNotFoundError:
        raise DataError(f"no profile at {target}") from None
    except orjson.JSONDecodeError as exc:
        raise DataError(f"profile {target} is not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and data.get("status") == "missing":
        return MissingProfile(str(data.get("reason", "")), data.get("raw_path"))
    return ProfileResult.from_dict(data)

"""Terminal tables and the JSON document of op profiles; pure functions of the results.

For one profile: a header (what was captured, op time against model-call time, profiler
overhead), time by group, and the top ops. For several profiles of one model at different
batch sizes (isolated mode), one such block each, then a scaling table: each leading op's
self time per prediction at every batch size, and how much it grew from the smallest batch
to the largest. An op whose time grows like the batch does costs per row; one that stays
flat costs per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelcaliper.payload.render import render_table
from modelcaliper.profile.base import FORMAT, MissingProfile, OpStat, ProfileResult
from modelcaliper.profile.grouping import split_name

__all__ = ["display_name", "profiles_document", "render_missing", "render_profile",
           "render_profiles"]

_NAME_WIDTH = 64


def display_name(op: OpStat, width: int = _NAME_WIDTH) -> str:
    """The op's name without call wrappers, cut from the left to ``width`` characters."""
    name = "/".join(split_name(op.name)) or op.name
    return name if len(name) <= width else "…" + name[-(width - 1):]


def _ms(value_us: float) -> str:
    return f"{value_us / 1000:,.2f}"


def _us(value_us: float) -> str:
    return f"{value_us:,.1f}" if value_us < 1000 else f"{value_us:,.0f}"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _header(result: ProfileResult) -> str:
    parts = [result.runtime]
    if result.label:
        parts.append(result.label)
    if result.predictions:
        parts.append(f"{result.predictions} predictions")
    if result.window_s is not None:
        parts.append(f"{result.window_s:g} s window")
    line = " · ".join(parts)
    facts = [f"op self time {_ms(result.total_us)} ms (all threads)"]
    if result.wall_us:
        facts.append(f"model calls {_ms(result.wall_us)} ms wall")
    if result.overhead_ratio is not None:
        facts.append(f"profiling overhead ×{result.overhead_ratio:.2f}")
    return f"{line}\n{' · '.join(facts)}"


def render_profile(result: ProfileResult, top_n: int = 10) -> str:
    """One profile: header, time by group, top ops, notes."""
    summary = result.summary(top_n)
    groups = render_table(
        ["group", "self ms", "share", "ops"],
        [[g.group, _ms(g.self_us), _pct(g.share), str(g.ops)] for g in summary.groups],
        left_columns=1,
    )
    per_prediction = bool(result.predictions)
    rows = []
    for rank, op in enumerate(summary.top, start=1):
        per = _us(op.self_us / result.predictions) if per_prediction and result.predictions \
            else "-"
        rows.append([str(rank), display_name(op), op.op_type, op.group, str(op.calls),
                     _ms(op.self_us), _pct(op.share), per,
                     op.input_shapes[0] if op.input_shapes else ""])
    ops = render_table(["#", "op", "type", "group", "calls", "self ms", "share", "µs/pred",
                        "input shapes"], rows, left_columns=4)
    blocks = [_header(result), groups, f"top {len(summary.top)} ops by self time", ops]
    if any(not op.traced for op in result.ops):
        blocks.append("untraced rows: time the executor spent on ops TensorFlow had stopped "
                      "timing as cheap (see docs/profiling.md)")
    blocks += list(result.notes)
    files = [p for p in (result.raw_path, result.trace_path) if p]
    if files:
        blocks.append("files: " + "  ".join(dict.fromkeys(files)))
    return "\n\n".join(blocks) + "\n"


def render_profiles(results: Sequence[ProfileResult], top_n: int = 10) -> str:
    """Profiles of one model at several batch sizes, then how the leading ops scale."""
    blocks = [render_profile(r, top_n).rstrip("\n") for r in results]
    scaled = [r for r in results if r.batch_size and r.predictions]
    if len(scaled) > 1:
        blocks.append(_scaling(scaled, top_n))
    return "\n\n".join(blocks) + "\n"


def _scaling(results: Sequence[ProfileResult], top_n: int) -> str:
    smallest, largest = results[0], results[-1]
    leading: dict[str, float] = {}
    for result in results:
        for op in result.ops[:top_n]:
            leading[op.name] = max(leading.get(op.name, 0.0), op.share)
    names = sorted(leading, key=lambda n: -leading[n])[:top_n]
    rows = []
    for name in names:
        found = [r.op(name) for r in results]
        per = [op.self_us / r.predictions if op and r.predictions else None
               for op, r in zip(found, results, strict=True)]
        first, last = per[0], per[-1]
        growth = f"×{last / first:.1f}" if first and last else "-"
        known = next(op for op in found if op is not None)
        rows.append([display_name(known, 48), known.group,
                     *(_us(p) if p is not None else "-" for p in per), growth])
    headers = ["op", "group", *(f"µs/pred @{r.batch_size}" for r in results), "growth"]
    ratio = (largest.batch_size or 1) / (smallest.batch_size or 1)
    title = (f"scaling with batch size (batch ×{ratio:g} from {smallest.batch_size} to "
             f"{largest.batch_size}; growth near ×{ratio:g} means a cost per row, near ×1 a "
             "cost per call)")
    return title + "\n" + render_table(headers, rows, left_columns=2)


def render_missing(missing: MissingProfile) -> str:
    """One line saying that no profile was taken and why."""
    return f"profile: missing: {missing.reason}\n"


def profiles_document(results: Sequence[ProfileResult | MissingProfile], *,
                      model: str | None = None, top_n: int = 10) -> dict[str, Any]:
    """The JSON document of ``caliper profile --json``: one profile per batch size."""
    return {
        "format": FORMAT,
        "model": model,
        "profiles": [r.to_dict(top_n) if isinstance(r, ProfileResult) else r.to_dict()
                     for r in results],
    }

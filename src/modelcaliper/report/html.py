"""HTML for the Run, Compare and Runs views: Jinja2 templates with autoescaping, uPlot charts.

One set of templates serves two places. ``caliper report --html`` renders a single
self-contained file: the view data embedded as JSON, the chart library, the chart code and the
styles inlined, so it opens offline from disk. The web UI renders the same pages with the
scripts and styles linked from ``/assets/`` (so its Content-Security-Policy can forbid inline
scripts).

**Escaping.** Every value reaches the page through Jinja2's autoescaping, or inside the JSON
block, where ``<``, ``>``, ``&`` and the two JavaScript line separators are written as
``\\uXXXX`` escapes so no data can close the ``<script>`` element; the chart code only ever
puts text into the page with ``textContent``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from modelcaliper.errors import MissingExtraError

__all__ = ["ASSETS", "asset_text", "json_for_script", "render_compare_page", "render_report",
           "render_run_page", "render_runs_page", "render_sweep_page", "render_sweeps_page",
           "render_template"]

ASSETS = ("uPlot.iife.min.js", "uPlot.min.css", "caliper.js", "caliper.css", "uPlot.LICENSE",
          "sweep.js", "newrun.js")
"""Files under ``report/assets/`` that pages may use (and the web UI serves)."""

_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


@cache
def asset_text(name: str) -> str:
    """The text of one vendored or own asset (``ASSETS``)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files("modelcaliper.report").joinpath("assets", name).read_text("utf-8")


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``."""
    import orjson

    text = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return text.decode("utf-8").translate(_JSON_ESCAPES)


# ---------------------------------------------------------------------- formatting filters


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_ms(value: Any) -> str:
    """``12.3 ms`` with three significant figures or so; ``–`` when absent."""
    if _missing(value):
        return "–"
    size = abs(float(value))
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{float(value):,.{digits}f} ms"


def fmt_ratio(value: Any) -> str:
    """A fraction as a percentage (``1.25 %``); ``–`` when absent."""
    if _missing(value):
        return "–"
    percent = float(value) * 100
    return f"{percent:.2f} %" if percent < 10 else f"{percent:.1f} %"


def fmt_number(value: Any, digits: int = 1) -> str:
    """A number with thousands separators (whole numbers without decimals); ``–`` if absent."""
    if _missing(value):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or float(value).is_integer() and abs(float(value)) >= 1000:
        return f"{int(value):,}"
    return f"{float(value):,.{digits}f}"


def fmt_bytes(value: Any) -> str:
    """Bytes as ``812 B``, ``1.2 KiB``, ``3.4 MiB``; ``–`` when absent."""
    if _missing(value):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_value(value: Any, unit: str | None) -> str:
    """A value with its unit name: bytes, ms, s, ratio, per_s or none."""
    if unit == "bytes":
        return fmt_bytes(value)
    if unit == "ms":
        return fmt_ms(value)
    if unit == "ratio":
        return fmt_ratio(value)
    if unit == "s":
        return "–" if _missing(value) else f"{float(value):.3g} s"
    if unit == "per_s":
        return "–" if _missing(value) else f"{fmt_number(value)}/s"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_number(value) + (f" {unit}" if unit else "")
    return "–" if value is None else str(value)


def fmt_percentile(value: Any) -> str:
    """``p99.9``, or ``max`` for 100."""
    return "max" if float(value) >= 100 else f"p{float(value):g}"


def fmt_json(value: Any) -> str:
    """Pretty-printed JSON text of a document (escaped later by the template, like any text)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                        | orjson.OPT_NON_STR_KEYS).decode("utf-8")


def fmt_when(value: Any) -> str:
    """``2026-11-27T04:15:00.000Z`` as ``2026-11-27 04:15:00``."""
    if not isinstance(value, str):
        return "–"
    return value.replace("T", " ")[:19]


def _width(value: Any) -> str:
    """A share 0..1 as a CSS percentage with two decimals (clamped)."""
    share = 0.0 if _missing(value) else min(max(float(value), 0.0), 1.0)
    return f"{share * 100:.2f}%"


# ---------------------------------------------------------------------- environment


@cache
def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingExtraError("jinja2", "ui", "the HTML report and web UI") from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelcaliper.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(ms=fmt_ms, ratio=fmt_ratio, number=fmt_number, bytes=fmt_bytes,
                       value=fmt_value, percentile=fmt_percentile, pretty_json=fmt_json,
                       width=_width, when=fmt_when)
    env.globals["asset_text"] = asset_text
    env.policies["json.dumps_function"] = json_for_script
    return env


def render_template(name: str, *, inline_assets: bool, asset_base: str = "/assets/",
                    data: Any = None, **context: Any) -> str:
    """Render one page; ``inline_assets`` inlines scripts and styles (the offline report)."""
    import markupsafe

    env = _environment()
    return env.get_template(name).render(
        inline_assets=inline_assets, asset_base=asset_base,
        data_json=markupsafe.Markup(json_for_script(data)), **context)


def render_run_page(view: Mapping[str, Any], *, inline_assets: bool = False,
                    nav: bool = True) -> str:
    """The Run page of one run view."""
    key = str(view["run"]["run_id"])
    return render_template("run.html", inline_assets=inline_assets, nav=nav, view=view,
                           key=key, data={"views": {key: view}},
                           title=f"{view['run'].get('model') or 'run'} · {key}")


def render_compare_page(compare: Mapping[str, Any], *, inline_assets: bool = False,
                        nav: bool = True) -> str:
    """The Compare page of a compare view."""
    ids = " vs ".join(str(r["run_id"]) for r in compare["runs"])
    return render_template("compare.html", inline_assets=inline_assets, nav=nav,
                           compare=compare, data={"compare": compare}, title=f"compare {ids}")


def render_report(views: Sequence[Mapping[str, Any]],
                  compare: Mapping[str, Any] | None = None) -> str:
    """The self-contained HTML report: the comparison (with several runs), then every run."""
    keys = [str(v["run"]["run_id"]) for v in views]
    title = (f"{views[0]['run'].get('model') or 'run'} · {keys[0]}" if len(views) == 1
             else f"compare {' vs '.join(keys)}")
    return render_template("report.html", inline_assets=True, nav=False, title=title,
                           views=list(zip(keys, views, strict=True)), compare=compare,
                           data={"views": dict(zip(keys, views, strict=True)),
                                 "compare": compare})


def render_runs_page(listing: Mapping[str, Any]) -> str:
    """The Runs page (web UI only) of a listing from ``web.routes``."""
    return render_template("runs.html", inline_assets=False, nav=True, listing=listing,
                           data=None, title="runs")


def render_sweep_page(view: Mapping[str, Any], *, inline_assets: bool = False,
                      links: bool = True) -> str:
    """The Sweep page of a sweep view: linked assets and run links in the web UI, or the
    self-contained report (``inline_assets``, no navigation, run ids as plain text)."""
    sweep = view["sweep"]
    return render_template("sweep.html", inline_assets=inline_assets, nav=not inline_assets,
                           view=view, links=links, data={"sweep": view},
                           title=f"sweep {sweep.get('model') or ''} · {sweep['sweep_id']}")


def render_sweeps_page(listing: Mapping[str, Any]) -> str:
    """The Sweeps page (web UI only): every sweep found, newest first."""
    return render_template("sweeps.html", inline_assets=False, nav=True, listing=listing,
                           data=None, title="sweeps")

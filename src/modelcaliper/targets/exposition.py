"""The Prometheus text exposition format: parse a scrape, assemble histograms, estimate quantiles.

``parse_exposition`` reads the Prometheus text format (and the OpenMetrics flavour):
``# TYPE`` lines give the kinds, other comments are skipped, label values may hold ``\\\\``,
``\\"`` and ``\\n`` escapes, values may be ``+Inf``/``-Inf``/``NaN``, timestamps and exemplars
are ignored, untyped series are kept, and a line that cannot be parsed is counted and skipped
instead of failing the scrape. Names may contain colons (TF Serving's
``:tensorflow:serving:request_latency``) or, in the newer quoted form, anything at all.

``histograms_of`` groups ``_bucket``/``_sum``/``_count`` samples into ``Histogram`` series
(summaries too, without buckets). ``bucket_quantile`` estimates a quantile from cumulative
buckets the way Prometheus' ``histogram_quantile`` does: find the bucket holding the rank
and interpolate linearly inside it; the lowest bucket starts at 0 (or is its bound when
that is ≤ 0), and a rank in the ``+Inf`` bucket answers the largest finite bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Exposition",
    "Histogram",
    "Labels",
    "Sample",
    "bucket_quantile",
    "histograms_of",
    "parse_exposition",
    "series",
]

_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One line of an exposition: a series name, its labels (sorted) and its value."""

    name: str
    labels: Labels
    value: float


@dataclass
class Exposition:
    """A parsed scrape: its samples, the ``# TYPE`` of each family, and lines skipped."""

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    skipped: int = 0

    def values(self) -> dict[tuple[str, Labels], float]:
        """Every sample's value by (name, labels)."""
        return {(s.name, s.labels): s.value for s in self.samples}


def _read_quoted(line: str, i: int) -> tuple[str, int]:
    """The string starting after the opening quote at ``i``, escapes resolved; next index."""
    out: list[str] = []
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            out.append(_ESCAPES.get(line[i + 1], "\\" + line[i + 1]))
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ValueError("unterminated quoted string")


def _skip_spaces(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def _parse_labels(line: str, i: int) -> tuple[list[tuple[str, str]], str | None, int]:
    """Labels from just after ``{`` to just after ``}``; a bare quoted string is the name."""
    labels: list[tuple[str, str]] = []
    name: str | None = None
    while True:
        i = _skip_spaces(line, i)
        if i >= len(line):
            raise ValueError("unterminated label set")
        if line[i] == "}":
            return labels, name, i + 1
        if line[i] == '"':
            key, i = _read_quoted(line, i + 1)
        else:
            match = _LABEL.match(line, i)
            if match is None:
                raise ValueError("bad label name")
            key, i = match.group(), match.end()
        i = _skip_spaces(line, i)
        if i < len(line) and line[i] in ",}" and name is None and not labels:
            name = key  # {"metric.name", label="v"}: the quoted metric name
        else:
            if line[i:i + 1] != "=":
                raise ValueError("expected '='")
            i = _skip_spaces(line, i + 1)
            if line[i:i + 1] != '"':
                raise ValueError("expected a quoted label value")
            value, i = _read_quoted(line, i + 1)
            labels.append((key, value))
        i = _skip_spaces(line, i)
        if line[i:i + 1] == ",":
            i += 1


def _parse_sample(line: str) -> Sample:
    name: str | None = None
    i = 0
    if line[0] != "{":
        match = _NAME.match(line)
        if match is None:
            raise ValueError("bad metric name")
        name, i = match.group(), match.end()
        i = _skip_spaces(line, i)
    labels: list[tuple[str, str]] = []
    if line[i:i + 1] == "{":
        labels, quoted, i = _parse_labels(line, i + 1)
        name = name or quoted
    if not name:
        raise ValueError("no metric name")
    rest = line[i:].split("#", 1)[0].split()  # value [timestamp] [# exemplar]
    if not rest or len(rest) > 2:
        raise ValueError("expected a value and an optional timestamp")
    return Sample(name, tuple(sorted(labels)), float(rest[0]))


def parse_exposition(text: str) -> Exposition:
    """Parse the Prometheus text exposition format (tolerantly; see the module docstring)."""
    exposition = Exposition()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                exposition.types[parts[2]] = parts[3].strip().lower()
            continue
        try:
            exposition.samples.append(_parse_sample(line))
        except (ValueError, IndexError):
            exposition.skipped += 1
    return exposition


@dataclass
class Histogram:
    """One histogram (or summary) series: cumulative buckets by upper bound, sum and count."""

    name: str
    labels: Labels
    buckets: list[tuple[float, float]] = field(default_factory=list)
    sum: float = math.nan
    count: float = math.nan

    def sorted_buckets(self) -> list[tuple[float, float]]:
        """Buckets by bound, cumulative counts made monotonic (float noise in exporters)."""
        out: list[tuple[float, float]] = []
        running = 0.0
        for bound, count in sorted(self.buckets):
            running = max(running, count)
            out.append((bound, running))
        return out


def histograms_of(exposition: Exposition) -> dict[tuple[str, Labels], Histogram]:
    """Every histogram and summary series of a scrape, keyed by (family, labels)."""
    found: dict[tuple[str, Labels], Histogram] = {}
    families = {name for name, kind in exposition.types.items() if kind in ("histogram",
                                                                             "summary")}
    for sample in exposition.samples:
        if sample.name.endswith("_bucket") and any(k == "le" for k, _ in sample.labels):
            families.add(sample.name[:-len("_bucket")])  # untyped histograms too
    for sample in exposition.samples:
        base, _, suffix = sample.name.rpartition("_")
        if base not in families or suffix not in ("bucket", "sum", "count"):
            continue
        labels = tuple((k, v) for k, v in sample.labels if k != "le")
        hist = found.setdefault((base, labels), Histogram(base, labels))
        if suffix == "bucket":
            le = dict(sample.labels)["le"]
            try:
                hist.buckets.append((float(le), sample.value))
            except ValueError:
                continue
        elif suffix == "sum":
            hist.sum = sample.value
        else:
            hist.count = sample.value
    return found


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile (0..1) of cumulative ``(upper bound, count)`` buckets, interpolated."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if not total > 0 or not 0 <= q <= 1:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if index == len(buckets) - 1:
        return buckets[-2][0] if len(buckets) > 1 else None
    upper, count = buckets[index]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (buckets[index - 1][0], buckets[index - 1][1]) if index else (0.0, 0.0)
    inside = count - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside



def series(exposition: Exposition, name: str, **labels: str) -> Iterable[Sample]:
    """The samples of ``name`` whose labels include ``labels``."""
    for sample in exposition.samples:
        if sample.name == name and all(dict(sample.labels).get(k) == v
                                       for k, v in labels.items()):
            yield sample

"""Which column feeds which model input: ``--map`` flags, a map file, then name matching.

A map file is JSON (or YAML when PyYAML is installed), either flat or under ``inputs``::

    {"inputs": {"price": "price_usd",
                "recent_items": {"column": "history", "pad": 0}}}

An entry is a column name, or an object with ``column`` and ``pad`` (the value that fills
lists shorter than the input's length; without it, lists of different lengths are refused).
``--map input=column`` flags override the file. Inputs the map does not name are matched by
exact, then normalised, column name (``requests.match_columns``). Columns that feed no input
are dropped and listed once in ``MappedInputs.unused``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature
from modelcaliper.workload.requests import coerce_column, match_columns

__all__ = ["InputMap", "InputPlan", "MappedInputs", "load_input_map", "map_inputs", "plan_inputs"]

_ENTRY_KEYS = {"column", "pad"}


@dataclass(frozen=True)
class InputMap:
    """Input → column choices and per-input pad values given by the user."""

    columns: Mapping[str, str] = field(default_factory=dict)
    pads: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flags(cls, flags: Sequence[str]) -> InputMap:
        """An ``InputMap`` from ``input=column`` strings (``--map`` flags)."""
        columns: dict[str, str] = {}
        for flag in flags:
            name, sep, column = flag.partition("=")
            if not sep or not name.strip() or not column.strip():
                raise DataError(f"--map {flag!r} must look like input=column")
            if name.strip() in columns:
                raise DataError(f"--map names input '{name.strip()}' twice")
            columns[name.strip()] = column.strip()
        return cls(columns)

    @classmethod
    def from_dict(cls, data: Any, source: str = "map") -> InputMap:
        """An ``InputMap`` from the map-file structure in the module docstring."""
        if isinstance(data, Mapping) and set(data) == {"inputs"}:
            data = data["inputs"]
        if not isinstance(data, Mapping):
            raise DataError(f"{source}: expected an object of input: column entries")
        columns: dict[str, str] = {}
        pads: dict[str, Any] = {}
        for name, entry in data.items():
            if isinstance(entry, str):
                columns[str(name)] = entry
                continue
            if not isinstance(entry, Mapping) or not set(entry) <= _ENTRY_KEYS or not entry:
                raise DataError(f"{source}: input '{name}' must map to a column name or an "
                                f"object with {' and/or '.join(sorted(_ENTRY_KEYS))}")
            if "column" in entry:
                if not isinstance(entry["column"], str):
                    raise DataError(f"{source}: input '{name}': column must be a name")
                columns[str(name)] = entry["column"]
            if "pad" in entry:
                if not isinstance(entry["pad"], (int, float, str, bool)):
                    raise DataError(f"{source}: input '{name}': pad must be a number or a "
                                    f"string, got {entry['pad']!r}")
                pads[str(name)] = entry["pad"]
        return cls(columns, pads)

    def merged(self, other: InputMap) -> InputMap:
        """This map with ``other``'s entries taking precedence."""
        return InputMap({**self.columns, **other.columns}, {**self.pads, **other.pads})


def load_input_map(path: str | Path | None = None, flags: Sequence[str] = ()) -> InputMap:
    """The map from a JSON/YAML file (if given) overridden by ``--map`` flags."""
    base = InputMap()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"map file {p} does not exist")
        text = p.read_bytes()
        if p.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise DataError(f"map file {p} is YAML, which needs PyYAML (pip install pyyaml); "
                                "or write the map as JSON") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(f"map file {p} is not valid YAML: {first}") from None
        else:
            try:
                data = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"map file {p} is not valid JSON: {exc}") from None
        base = InputMap.from_dict(data, str(p))
    return base.merged(InputMap.from_flags(flags))


@dataclass(frozen=True)
class InputPlan:
    """Which column feeds each input, and the columns no input uses."""

    sources: Mapping[str, str]
    unused: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """The columns to read, in input order, each once."""
        return list(dict.fromkeys(self.sources.values()))

    def unused_message(self, shown: int = 10) -> str | None:
        """One line listing the dropped columns, or None when every column is used."""
        if not self.unused:
            return None
        names = ", ".join(self.unused[:shown])
        more = f" and {len(self.unused) - shown} more" if len(self.unused) > shown else ""
        return f"{len(self.unused)} column(s) feed no model input and were dropped: {names}{more}"


def plan_inputs(column_names: Sequence[str], signature: Signature,
                input_map: InputMap | None = None, *, keep: Sequence[str] = ()) -> InputPlan:
    """Match the signature's inputs to ``column_names``; ``keep`` names columns used otherwise."""
    input_map = input_map or InputMap()
    _check_pads(signature, input_map)
    sources = match_columns(list(column_names), signature, input_map.columns)
    used = set(sources.values()) | set(keep)
    return InputPlan(sources, tuple(c for c in column_names if c not in used))


def _check_pads(signature: Signature, input_map: InputMap) -> None:
    names = [spec.name for spec in signature.inputs]
    for name in input_map.pads:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; close input names: {', '.join(close)}" if close else ""
            raise DataError(f"the map sets a pad for input '{name}', which the model does not "
                            f"have{hint}")


@dataclass(frozen=True)
class MappedInputs:
    """Whole-column input tensors, the column behind each, and the dropped columns."""

    tensors: dict[str, np.ndarray]
    plan: InputPlan

    @property
    def unused(self) -> tuple[str, ...]:
        """Columns that feed no input."""
        return self.plan.unused


def map_inputs(columns: Mapping[str, np.ndarray], signature: Signature,
               input_map: InputMap | None = None, *, keep: Sequence[str] = ()) -> MappedInputs:
    """Every input of ``signature`` as a tensor built from ``columns`` (see module docstring)."""
    input_map = input_map or InputMap()
    plan = plan_inputs(list(columns), signature, input_map, keep=keep)
    tensors = {
        spec.name: coerce_column(columns[plan.sources[spec.name]], spec,
                                 plan.sources[spec.name], pad=input_map.pads.get(spec.name))
        for spec in signature.inputs
    }
    return MappedInputs(tensors, plan)

"""A model's signature: the names, dtypes and shapes of its inputs and outputs.

Shapes are per request and use ``-1`` for a dimension of any size; the first dimension is
the batch (``[-1]`` is one scalar per row, ``[-1, 16]`` a 16-vector per row). A signature
comes from a model artifact, a server's metadata endpoint, or a JSON file such as::

    {"inputs":  [{"name": "price", "dtype": "float32", "shape": [-1]},
                 {"name": "country", "dtype": "string", "shape": [-1]}],
     "outputs": [{"name": "score", "dtype": "float32", "shape": [-1, 1]}]}

(``inputs``/``outputs`` may also be objects keyed by name; dtypes take numpy, v2 or
TensorFlow spellings.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelcaliper.errors import DataError, WireError
from modelcaliper.wire.tensors import DType, parse_dtype

__all__ = ["Signature", "TensorSpec", "load_signature_file"]


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a signature; ``shape`` uses -1 for any size (batch first)."""

    name: str
    dtype: DType
    shape: tuple[int, ...] = (-1,)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", parse_dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < -1 for d in self.shape):
            raise DataError(
                f"input '{self.name}': shape {list(self.shape)} has a dimension below -1"
            )

    def row_shape(self) -> tuple[int, ...]:
        """The shape of one row (the shape without its batch dimension)."""
        return self.shape[1:]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``dtype`` in the v2 spelling)."""
        return {"name": self.name, "dtype": self.dtype.v2, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a model, in a stable order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    name: str = "serving_default"

    def input(self, name: str) -> TensorSpec:
        """The input called ``name``."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise DataError(f"the signature has no input '{name}'")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, the same shape ``load_signature_file`` reads."""
        return {
            "name": self.name,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "signature") -> Signature:
        """Build a signature from the JSON form described in this module's docstring."""
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise DataError(f"{source}: expected an object with an 'inputs' list")
        inputs = _specs(data["inputs"], source, "inputs")
        if not inputs:
            raise DataError(f"{source}: 'inputs' is empty; a model needs at least one input")
        outputs = _specs(data.get("outputs", []), source, "outputs")
        return cls(inputs=inputs, outputs=outputs, name=str(data.get("name", "serving_default")))


def _specs(raw: Any, source: str, section: str) -> tuple[TensorSpec, ...]:
    if isinstance(raw, Mapping):
        raw = [
            {"name": k, **(v if isinstance(v, Mapping) else {"dtype": v})} for k, v in raw.items()
        ]
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise DataError(f"{source}: '{section}' must be a list or an object keyed by name")
    specs = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or "name" not in entry or "dtype" not in entry:
            raise DataError(f"{source}: {section}[{i}] needs at least 'name' and 'dtype'")
        name = str(entry["name"])
        if name in seen:
            raise DataError(f"{source}: {section} lists '{name}' twice")
        seen.add(name)
        shape = entry.get("shape", [-1])
        if not isinstance(shape, Sequence) or not all(isinstance(d, int) for d in shape):
            raise DataError(
                f"{source}: {section} '{name}': shape must be a list of integers, got {shape!r}"
            )
        try:
            dtype = parse_dtype(entry["dtype"])
        except WireError as exc:
            raise DataError(f"{source}: {section} '{name}': {exc}") from None
        extra = {k: v for k, v in entry.items() if k not in ("name", "dtype", "shape")}
        specs.append(TensorSpec(name, dtype, tuple(shape), extra))
    return tuple(specs)


def load_signature_file(path: str | Path) -> Signature:
    """Read a signature JSON file; errors name the file and the fix."""
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"signature file {p} does not exist; pass a JSON file with an 'inputs' list"
        )
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise DataError(f"signature file {p} is not valid JSON: {exc}") from None
    return Signature.from_dict(data, source=str(p))

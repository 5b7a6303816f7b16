"""Two what-ifs, computed by re-encoding the same requests, not estimated with formulas.

* **Shared context features**: inputs whose value is the same for every row of a query group
  (the user, the query, the device) could travel once per request instead of once per row.
  Each request is re-encoded with those inputs cut to their first row.
* **Short feature names**: JSON bodies repeat input names, in TF Serving's row format once
  per row. Each request is re-encoded with inputs renamed ``f0``, ``f1``, ... in signature
  order, and the bytes spent on names in the original body are counted.

Sizes are means per request, uncompressed and with gzip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature
from modelcaliper.wire import Codec, Encoded, InferRequest
from modelcaliper.wire.compression import compress
from modelcaliper.workload.requests import group_codes, input_tensors

__all__ = ["context_inputs", "name_bytes", "shared_context_whatif", "short_names_whatif"]


def context_inputs(
    signature: Signature, columns: Mapping[str, np.ndarray], group_by: str | None
) -> list[str]:
    """Inputs whose value never changes within a group of ``group_by`` (signature order).

    Needs at least one group with two rows or more; with none, nothing can be shown constant.
    """
    if group_by is None or group_by not in columns:
        return []
    codes = group_codes(np.asarray(columns[group_by]))
    order = np.argsort(codes, kind="stable")
    same_group = codes[order][1:] == codes[order][:-1]
    if not same_group.any():
        return []
    found = []
    for name, tensor in input_tensors(columns, signature).items():
        ordered = tensor[order]
        equal = ordered[1:] == ordered[:-1]
        if equal.ndim > 1:
            equal = equal.reshape(equal.shape[0], -1).all(axis=1)
        if bool(np.all(equal[same_group])):
            found.append(name)
    return found


@dataclass(frozen=True)
class _Sizes:
    """Requests encoded one way: the messages and their mean size, plain and gzipped."""

    encoded: list[Encoded]
    plain_bytes: float
    gzip_bytes: float


def _sizes(
    requests: Sequence[InferRequest],
    codec: Codec,
    transform: Callable[[InferRequest], InferRequest] | None = None,
) -> _Sizes:
    """Encode ``requests`` (after ``transform``) and measure the mean body size."""
    encoded = [codec.encode_request(transform(r) if transform else r) for r in requests]
    count = len(encoded)
    return _Sizes(
        encoded=encoded,
        plain_bytes=sum(len(e.body) for e in encoded) / count,
        gzip_bytes=sum(len(compress(e.body, "gzip")) for e in encoded) / count,
    )


def _compare(
    requests: Sequence[InferRequest],
    codec: Codec,
    transform: Callable[[InferRequest], InferRequest],
    refusal: str,
) -> tuple[_Sizes, _Sizes] | str:
    """Sizes today and after ``transform``, or why the codec refused (prefixed by ``refusal``)."""
    try:
        today = _sizes(requests, codec)
    except WireError as exc:
        return f"cannot encode these requests: {exc}"
    try:
        return today, _sizes(requests, codec, transform)
    except WireError as exc:
        return f"{refusal}: {exc}"


def _saving(before: float, after: float) -> dict[str, float]:
    return {
        "saving_bytes": round(before - after),
        "saving_pct": round(100.0 * (before - after) / before, 2) if before else 0.0,
    }


def shared_context_whatif(
    signature: Signature,
    columns: Mapping[str, np.ndarray],
    requests_by_batch: Mapping[int, Sequence[InferRequest]],
    codecs: Mapping[str, Codec],
    group_by: str | None,
) -> dict[str, Any]:
    """Request bytes per encoding today and with the context inputs sent as one row."""
    context = context_inputs(signature, columns, group_by)

    def cut(request: InferRequest) -> InferRequest:
        inputs = {n: (t[:1] if n in context else t) for n, t in request.inputs.items()}
        return InferRequest(
            inputs=inputs, model_name=request.model_name, signature_name=request.signature_name
        )

    results: list[dict[str, Any]] = []
    for batch_size, requests in requests_by_batch.items():
        for encoding, codec in codecs.items():
            entry: dict[str, Any] = {"batch_size": batch_size, "encoding": encoding}
            results.append(entry)
            compared = _compare(requests, codec, cut, "cannot send inputs with fewer rows")
            if isinstance(compared, str):
                entry["error"] = compared
                continue
            today, shared = compared
            entry.update(
                request_bytes=round(today.plain_bytes),
                shared_request_bytes=round(shared.plain_bytes),
                **_saving(today.plain_bytes, shared.plain_bytes),
                gzip_request_bytes=round(today.gzip_bytes),
                gzip_shared_request_bytes=round(shared.gzip_bytes),
                gzip_saving_pct=_saving(today.gzip_bytes, shared.gzip_bytes)["saving_pct"],
            )
    note = None
    if group_by is None:
        note = "no query groups: pass --group-by COLUMN to find per-query inputs"
    elif not context:
        note = f"no input is constant within every '{group_by}' group"
    return {"group_by": group_by, "columns": context, "note": note, "results": results}


def name_bytes(encoded: Encoded, names: Sequence[str]) -> int:
    """Bytes of ``encoded``'s JSON that are input names (each occurrence, quotes excluded)."""
    body = encoded.body
    json_length = encoded.header("inference-header-content-length")
    if json_length is not None and json_length.isdigit():
        body = body[: int(json_length)]  # the binary tail holds tensor data, not names
    total = 0
    for name in names:
        needle = orjson.dumps(name)
        total += body.count(needle) * (len(needle) - 2)
    return total


def _renamed(request: InferRequest, short: Mapping[str, str]) -> InferRequest:
    return InferRequest(
        inputs={short[n]: t for n, t in request.inputs.items()},
        model_name=request.model_name,
        signature_name=request.signature_name,
    )


def short_names_whatif(
    requests_by_batch: Mapping[int, Sequence[InferRequest]], codecs: Mapping[str, Codec]
) -> dict[str, Any]:
    """Per JSON (REST) encoding: bytes spent on input names, and the body with ``fN`` names."""
    results: list[dict[str, Any]] = []
    for batch_size, requests in requests_by_batch.items():
        if not requests:
            continue
        names = list(requests[0].inputs)
        rename = partial(_renamed, short={name: f"f{i}" for i, name in enumerate(names)})
        for encoding, codec in codecs.items():
            if codec.transport != "http":
                continue
            entry: dict[str, Any] = {"batch_size": batch_size, "encoding": encoding}
            results.append(entry)
            compared = _compare(requests, codec, rename, "cannot rename the inputs")
            if isinstance(compared, str):
                entry["error"] = compared
                continue
            today, short = compared
            plain = today.plain_bytes
            spent = sum(name_bytes(e, names) for e in today.encoded) / len(today.encoded)
            entry.update(
                request_bytes=round(plain),
                name_bytes=round(spent),
                name_pct=round(100.0 * spent / plain, 2) if plain else 0.0,
                short_names_request_bytes=round(short.plain_bytes),
                **_saving(plain, short.plain_bytes),
                gzip_request_bytes=round(today.gzip_bytes),
                gzip_short_names_request_bytes=round(short.gzip_bytes),
                gzip_saving_pct=_saving(today.gzip_bytes, short.gzip_bytes)["saving_pct"],
            )
    return {"scheme": "f0, f1, ... in signature order", "results": results}

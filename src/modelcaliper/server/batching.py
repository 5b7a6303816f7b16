"""Server-side batching with TensorFlow Serving's parameters and semantics.

TF Serving's batching merges concurrent requests into one model call. A batch is closed
when it holds ``max_batch_size`` rows or when ``batch_timeout_micros`` have passed since its
first request arrived, whichever comes first; ``num_batch_threads`` batches run at once;
at most ``max_enqueued_batches`` closed batches may wait for a thread, and a request that
would exceed that is rejected at once (the server answers 503 / UNAVAILABLE-style overload).
When ``allowed_batch_sizes`` is set, a batch is padded up to the next allowed size (the last
allowed size must equal ``max_batch_size``). Requests are never split across batches here,
so a single request larger than ``max_batch_size`` is rejected.

``pad_variable_length_inputs`` pads inputs whose non-batch dimensions differ between the
requests of one batch to the largest size, with zeros (empty strings for BYTES), as TF
Serving does when that option is on; otherwise such requests fail with a clear message.

The same parameters are read from TF Serving's ``--batching_parameters_file`` text format::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 1000 }
    num_batch_threads { value: 2 }
    max_enqueued_batches { value: 100 }
    allowed_batch_sizes: 8
    allowed_batch_sizes: 32
    pad_variable_length_inputs: true
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelcaliper.errors import UsageError, WireError

__all__ = ["BatchingParameters", "Batcher", "OverloadedError", "parse_batching_parameters"]

Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class OverloadedError(Exception):
    """The queue is full; the request was rejected without running."""


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching knobs, with its names and defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise UsageError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        sizes = tuple(int(s) for s in self.allowed_batch_sizes)
        object.__setattr__(self, "allowed_batch_sizes", sizes)
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
                raise UsageError(
                    f"allowed_batch_sizes must be increasing and >= 1, got {list(sizes)}"
                )
            if sizes[-1] != self.max_batch_size:
                raise UsageError(
                    f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal max_batch_size "
                    f"({self.max_batch_size})"
                )

    def padded_size(self, rows: int) -> int:
        """The batch size a batch of ``rows`` rows is padded to."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows


_SCALAR = re.compile(r"^\s*(\w+)\s*\{\s*value\s*:\s*([^\s}]+)\s*\}\s*$")
_FIELD = re.compile(r"^\s*(\w+)\s*:\s*([^\s#]+)\s*$")
_INT_FIELDS = (
    "max_batch_size",
    "batch_timeout_micros",
    "num_batch_threads",
    "max_enqueued_batches",
)


def parse_batching_parameters(text_or_path: str | Path) -> BatchingParameters:
    """Read TF Serving's ``batching_parameters`` text format (a path or the text itself)."""
    path = (
        Path(text_or_path)
        if not str(text_or_path)
        .lstrip()
        .startswith(("max_", "batch_", "num_", "allowed_", "pad_", "#"))
        else None
    )
    source = "batching parameters"
    if path is not None:
        if not path.is_file():
            raise UsageError(f"batching parameters file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        text = str(text_or_path)
    values: dict[str, object] = {}
    sizes: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        match = _SCALAR.match(line) or _FIELD.match(line)
        if not match:
            raise UsageError(
                f"{source}:{number}: cannot read '{line.strip()}'; expected "
                "'name { value: N }' or 'name: value'"
            )
        name, raw = match.group(1), match.group(2)
        try:
            if name in _INT_FIELDS:
                values[name] = int(raw)
            elif name == "allowed_batch_sizes":
                sizes.append(int(raw))
            elif name == "pad_variable_length_inputs":
                if raw not in ("true", "false"):
                    raise ValueError(raw)
                values[name] = raw == "true"
            else:
                raise UsageError(f"{source}:{number}: unknown batching parameter '{name}'")
        except ValueError:
            raise UsageError(
                f"{source}:{number}: '{raw}' is not a valid value for {name}"
            ) from None
    if sizes:
        values["allowed_batch_sizes"] = tuple(sizes)
    return BatchingParameters(**values)  # type: ignore[arg-type]


@dataclass
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[tuple[dict[str, np.ndarray], dict[str, int]]]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)


class Batcher:
    """Merges concurrent requests into model calls; one instance per served model."""

    def __init__(self, predict: Predict, params: BatchingParameters) -> None:
        self._predict = predict
        self.params = params
        self._executor = ThreadPoolExecutor(params.num_batch_threads, thread_name_prefix="batch")
        self._open: list[_Pending] = []
        self._open_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed_waiting = 0  # closed batches not yet picked up by a thread
        self._lock = threading.Lock()  # guards _closed_waiting across loop and batch threads

    @property
    def queued_batches(self) -> int:
        """Closed batches waiting for a batch thread."""
        return self._closed_waiting

    async def submit(
        self, inputs: Mapping[str, np.ndarray], rows: int
    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Run ``inputs`` (``rows`` rows) in a batch; return outputs and phase times in ns.

        Phases: ``batch`` (waiting for the batch to close), ``queue`` (closed, waiting for a
        thread) and ``compute`` (the model call of the whole batch).
        """
        if rows > self.params.max_batch_size:
            raise WireError(
                f"request has {rows} rows but max_batch_size is {self.params.max_batch_size}; "
                "send smaller requests or raise max_batch_size"
            )
        loop = asyncio.get_running_loop()
        if self._open_rows + rows > self.params.max_batch_size:
            self._close(loop)
        if not self._open and self._closed_waiting >= self.params.max_enqueued_batches:
            raise OverloadedError(
                f"batch queue full ({self._closed_waiting} batches waiting, "
                f"max_enqueued_batches={self.params.max_enqueued_batches})"
            )
        pending = _Pending(inputs, rows, loop.create_future())
        self._open.append(pending)
        self._open_rows += rows
        if self._open_rows >= self.params.max_batch_size or self.params.batch_timeout_micros == 0:
            self._close(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.params.batch_timeout_micros / 1e6, self._close, loop)
        return await pending.future

    def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._open:
            return
        batch, self._open, self._open_rows = self._open, [], 0
        closed_ns = time.perf_counter_ns()
        with self._lock:
            self._closed_waiting += 1
        task = loop.run_in_executor(self._executor, self._run, batch, closed_ns)
        task.add_done_callback(lambda f: self._deliver(batch, f))

    def _run(
        self, batch: list[_Pending], closed_ns: int
    ) -> tuple[list[dict[str, np.ndarray]], int, int]:
        start_ns = time.perf_counter_ns()
        with self._lock:
            self._closed_waiting -= 1
        rows = [p.rows for p in batch]
        merged = _merge([p.inputs for p in batch], self.params.pad_variable_length_inputs)
        total = sum(rows)
        padded = self.params.padded_size(total)
        if padded > total:
            merged = {k: _pad_rows(v, padded - total) for k, v in merged.items()}
        outputs = self._predict(merged)
        parts = _split(outputs, rows, total)
        return parts, start_ns - closed_ns, time.perf_counter_ns() - start_ns

    def _deliver(self, batch: list[_Pending], done: asyncio.Future) -> None:  # type: ignore[type-arg]
        exc = done.exception()
        if exc is not None:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        parts, queue_ns, compute_ns = done.result()
        closed_ns = time.perf_counter_ns() - compute_ns - queue_ns
        for p, outputs in zip(batch, parts, strict=True):
            if not p.future.done():
                phases = {
                    "batch": max(0, closed_ns - p.enqueued_ns),
                    "queue": queue_ns,
                    "compute": compute_ns,
                }
                p.future.set_result((outputs, phases))

    def close(self) -> None:
        """Stop the batch threads after the batches already running."""
        self._executor.shutdown(wait=True)


def _merge(inputs: list[Mapping[str, np.ndarray]], pad: bool) -> dict[str, np.ndarray]:
    if len(inputs) == 1:
        return dict(inputs[0])
    merged: dict[str, np.ndarray] = {}
    for name in inputs[0]:
        arrays = [i[name] for i in inputs]
        tails = {a.shape[1:] for a in arrays}
        if len(tails) > 1:
            if not pad:
                raise WireError(
                    "requests in one batch have different shapes "
                    f"{sorted(list(t) for t in tails)}; enable pad_variable_length_inputs",
                    tensor=name,
                )
            arrays = _pad_to_common(arrays)
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def _pad_to_common(arrays: list[np.ndarray]) -> list[np.ndarray]:
    ndim = arrays[0].ndim
    if any(a.ndim != ndim for a in arrays):
        raise WireError("requests in one batch have different ranks")
    target = [max(a.shape[d] for a in arrays) for d in range(1, ndim)]
    out = []
    for a in arrays:
        widths = [(0, 0)] + [(0, t - s) for t, s in zip(target, a.shape[1:], strict=True)]
        fill = b"" if a.dtype == object else 0
        out.append(np.pad(a, widths, constant_values=fill) if any(w[1] for w in widths) else a)
    return out


def _pad_rows(array: np.ndarray, extra: int) -> np.ndarray:
    # TF Serving pads a batch with copies of its first row.
    return np.concatenate([array, np.repeat(array[:1], extra, axis=0)], axis=0)


def _split(
    outputs: Mapping[str, np.ndarray], rows: list[int], total: int
) -> list[dict[str, np.ndarray]]:
    parts: list[dict[str, np.ndarray]] = [{} for _ in rows]
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] < total:
            raise WireError(
                f"model output has leading dimension {value.shape[:1]} for a batch of "
                f"{total} rows; it cannot be split per request",
                tensor=name,
            )
        start = 0
        for i, n in enumerate(rows):
            parts[i][name] = value[start : start + n]
            start += n
    return parts

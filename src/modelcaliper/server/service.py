"""The protocol-independent core of the embedded server: one served model and its queue.

HTTP and gRPC front ends decode a request into an ``InferRequest``, hand it to
``ModelService.infer`` together with the request's ``PhaseTimer``, and encode whatever comes
back. The service checks the model name and version, validates inputs against the
signature, runs the model (through the batcher when batching is on, otherwise on a small
pool of model threads behind a bounded queue) and fills the ``queue``, ``batch`` and
``compute`` (or ``transform`` + ``model``) phases.

Overload is explicit: when ``max_queued_requests`` requests already wait for a model thread,
a new one is rejected at once with ``OverloadedError`` (HTTP 503 / gRPC RESOURCE_EXHAUSTED)
rather than queued without bound, so latency recovers as soon as the load drops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelcaliper.errors import UsageError, WireError
from modelcaliper.server.batching import Batcher, BatchingParameters, OverloadedError
from modelcaliper.server.runtimes.base import Runtime, predict_timed, validate_inputs
from modelcaliper.server.timing import PhaseTimer
from modelcaliper.wire.tensors import InferRequest, InferResponse

__all__ = [
    "Failure",
    "ModelNotFoundError",
    "ModelService",
    "NotReadyError",
    "OverloadedError",
    "RuntimeFailure",
    "ServiceOptions",
    "classify_failure",
]


class ModelNotFoundError(Exception):
    """The request names a model or version this server does not serve (404 / NOT_FOUND)."""


class NotReadyError(Exception):
    """The model is still loading or warming up (503 / UNAVAILABLE)."""


class RuntimeFailure(Exception):
    """The model raised while predicting (500 / INTERNAL); the server keeps serving."""


@dataclass(frozen=True)
class ServiceOptions:
    """How the service runs the model; ``0`` means unbounded where noted."""

    model_threads: int = 1
    max_queued_requests: int = 64
    batching: BatchingParameters | None = None
    execution: str = "auto"
    """Where an unbatched prediction runs: ``thread`` (a pool of ``model_threads`` threads),
    ``loop`` (on the event loop itself, one at a time), or ``auto``: on the loop while the
    model's recent predictions take under ``INLINE_LIMIT_NS``, else on threads. Running on the
    loop saves the two thread hand-offs (~0.07 ms on one core) that dominate a fast model's
    overhead; requests still queue (and are shed) in the service, between predictions. A slow
    model would block the loop long enough to hide queueing in socket buffers, so ``auto``
    moves it to threads."""
    split_timing: bool = True
    """Time a TensorFlow model's ``transform`` and ``model`` signatures separately when it has
    both; each signature call has a fixed cost (~0.3 ms per request on the demo model)."""


INLINE_LIMIT_NS = 1_000_000
"""``auto`` execution runs predictions on the event loop while they take less than this."""

EXECUTIONS = ("auto", "thread", "loop")


class ModelService:
    """One model, served: validation, queueing or batching, timing."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        model_name: str,
        version: str,
        options: ServiceOptions | None = None,
    ) -> None:
        self.runtime = runtime
        self.model_name = model_name
        self.version = str(version)
        self.options = options or ServiceOptions()
        self.ready = False
        self._waiting = 0
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(self.options.model_threads, thread_name_prefix="model")
        if self.options.execution not in EXECUTIONS:
            raise UsageError(f"execution must be one of {', '.join(EXECUTIONS)}, "
                             f"got '{self.options.execution}'")
        self._inline = self.options.execution == "loop"
        self._recent_compute_ns = 0.0  # moving average of prediction times, for ``auto``
        # One slot when predicting on the loop: requests take turns, FIFO.
        self._slots = asyncio.Semaphore(1 if self._inline else self.options.model_threads)
        self._batcher = (
            Batcher(self._predict_for_batcher, self.options.batching)
            if self.options.batching
            else None
        )
        self._split = self.options.split_timing

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet answered."""
        return self._in_flight

    def check_model(self, name: str, version: str | None = None, label: str | None = None) -> None:
        """Raise ``ModelNotFoundError`` unless ``name``/``version``/``label`` address this model."""
        if name != self.model_name:
            raise ModelNotFoundError(
                f"model '{name}' is not served here; this server serves '{self.model_name}'"
            )
        if version not in (None, "", self.version):
            raise ModelNotFoundError(
                f"model '{name}' has no version {version}; served version is {self.version}"
            )
        if label not in (None, "", "stable", "latest"):
            raise ModelNotFoundError(f"model '{name}' has no version label '{label}'")

    def check_ready(self, name: str, version: str | None = None, label: str | None = None) -> None:
        """``check_model``, then raise ``NotReadyError`` until the model has warmed up."""
        self.check_model(name, version, label)
        if not self.ready:
            raise NotReadyError(f"model '{name}' is not ready yet (warming up)")

    async def infer(self, request: InferRequest, timer: PhaseTimer) -> InferResponse:
        """Run one decoded request; phases go into ``timer`` (validation counts as decode)."""
        self.check_ready(request.model_name, request.model_version, request.version_label)
        served = self.runtime.signature.name
        if request.signature_name and request.signature_name != served:
            raise WireError(f"signature '{request.signature_name}' is not served; this server "
                            f"serves '{served}'")
        inputs = validate_inputs(self.runtime.signature, request.inputs)
        timer.lap("decode")
        wanted = self._requested_outputs(request)
        self._in_flight += 1
        try:
            if self._batcher is not None:
                outputs = await self._infer_batched(inputs, request.batch_size, timer)
            else:
                outputs = await self._infer_direct(inputs, timer)
        finally:
            self._in_flight -= 1
        if wanted is not None:
            outputs = {k: outputs[k] for k in wanted}
        return InferResponse(
            outputs,
            model_name=self.model_name,
            model_version=self.version,
            request_id=request.request_id,
        )

    def _requested_outputs(self, request: InferRequest) -> list[str] | None:
        if not request.outputs:
            return None
        known = {spec.name for spec in self.runtime.signature.outputs}
        for name in request.outputs:
            if name not in known:
                raise WireError(
                    f"the model has no output '{name}'; outputs are {', '.join(sorted(known))}",
                    tensor=name,
                )
        return list(request.outputs)

    async def _infer_direct(
        self, inputs: Mapping[str, np.ndarray], timer: PhaseTimer
    ) -> dict[str, np.ndarray]:
        if self._waiting >= self.options.max_queued_requests > 0 and self._slots.locked():
            raise OverloadedError(
                f"request queue full ({self._waiting} waiting, "
                f"max_queued_requests={self.options.max_queued_requests})"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            timer.lap("queue")
            if self._inline:
                # Yield once while holding the slot, so requests that arrived meanwhile are
                # read and queue behind this one (or are shed) instead of waiting unseen in
                # socket buffers; then predict on the loop, blocking it until the model returns.
                await asyncio.sleep(0)
                outputs, phases_ns = self._run(inputs)
            else:
                loop = asyncio.get_running_loop()
                outputs, phases_ns = await loop.run_in_executor(self._executor, self._run, inputs)
            self._charge(timer, phases_ns)
            self._observe_compute(phases_ns["compute"])
            return outputs
        finally:
            self._slots.release()

    def _observe_compute(self, compute_ns: int) -> None:
        """Track recent prediction times and, under ``auto``, choose loop or threads."""
        self._recent_compute_ns += (compute_ns - self._recent_compute_ns) * 0.1
        if self.options.execution != "auto":
            return
        inline = self._recent_compute_ns < INLINE_LIMIT_NS
        if inline != self._inline and not self._slots.locked():
            self._inline = inline
            self._slots = asyncio.Semaphore(1 if inline else self.options.model_threads)

    def _run(
        self, inputs: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        start = time.perf_counter_ns()
        try:
            if self._split:
                outputs, split_s = predict_timed(self.runtime, inputs)
            else:
                outputs, split_s = self.runtime.predict(inputs), {}
        except (WireError, OverloadedError):
            raise
        except Exception as exc:  # the model's own failure, reported to the client as 500
            raise RuntimeFailure(f"{type(exc).__name__}: {exc}") from exc
        phases = {"compute": time.perf_counter_ns() - start}
        for name in ("transform", "model"):
            if name in split_s:
                phases[name] = int(split_s[name] * 1e9)
        return outputs, phases

    def _predict_for_batcher(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.runtime.predict(inputs)
        except (WireError, OverloadedError):
            raise
        except Exception as exc:
            raise RuntimeFailure(f"{type(exc).__name__}: {exc}") from exc

    async def _infer_batched(
        self, inputs: Mapping[str, np.ndarray], rows: int, timer: PhaseTimer
    ) -> dict[str, np.ndarray]:
        assert self._batcher is not None
        outputs, phases_ns = await self._batcher.submit(inputs, max(rows, 1))
        self._charge(timer, phases_ns)
        return outputs

    @staticmethod
    def _charge(timer: PhaseTimer, phases_ns: dict[str, int]) -> None:
        """Add phases measured on a model thread; the rest of the wait counts as queue.

        Handing a finished prediction back to the event loop takes time that belongs to no
        model phase; it is waiting, so it is charged to ``queue`` and the phases still add
        up to ``total``.
        """
        now_ns = time.perf_counter_ns()
        elapsed = now_ns - timer.mark_ns
        measured = sum(ns for name, ns in phases_ns.items() if name not in ("transform", "model"))
        for phase, ns in phases_ns.items():
            timer.add(phase, ns)
        timer.add("queue", max(0, elapsed - measured))
        timer.skip_to_now(now_ns)

    def warm_up(self, requests: int) -> None:
        """Run ``requests`` predictions on synthetic inputs before declaring the model ready."""
        from modelcaliper.workload.synthetic import synthetic_columns

        names = [spec.name for spec in self.runtime.signature.inputs]
        times_ns = []
        for i in range(max(0, requests)):
            columns = synthetic_columns(self.runtime.signature, 1 + i % 8, seed=i)
            start = time.perf_counter_ns()
            self.runtime.predict({name: columns[name] for name in names})
            times_ns.append(time.perf_counter_ns() - start)
        if times_ns and self.options.execution == "auto":
            # Warm-up batches are small; double the median as a guess for real ones.
            self._recent_compute_ns = 2.0 * float(np.median(times_ns))
            self._inline = self._recent_compute_ns < INLINE_LIMIT_NS
            self._slots = asyncio.Semaphore(1 if self._inline else self.options.model_threads)
        self.ready = True

    def close(self) -> None:
        """Release the model threads."""
        if self._batcher is not None:
            self._batcher.close()
        self._executor.shutdown(wait=True)


@dataclass(frozen=True)
class Failure:
    """How one failed request is answered, on either transport."""

    http_status: int
    grpc_code: str  # a grpc.StatusCode member name
    message: str


def classify_failure(exc: BaseException) -> Failure:
    """Map an exception raised while serving a request to its HTTP status and gRPC code.

    Client mistakes are 400 / INVALID_ARGUMENT, oversize bodies 413 / RESOURCE_EXHAUSTED,
    unknown models 404 / NOT_FOUND, a full queue 503 / RESOURCE_EXHAUSTED, and the model's
    own failures 500 / INTERNAL. Anything else is a server bug, still answered as 500.
    """
    from modelcaliper.errors import PayloadTooLargeError

    if isinstance(exc, PayloadTooLargeError):
        return Failure(413, "RESOURCE_EXHAUSTED", str(exc))
    if isinstance(exc, WireError):
        return Failure(400, "INVALID_ARGUMENT", str(exc))
    if isinstance(exc, ModelNotFoundError):
        return Failure(404, "NOT_FOUND", str(exc))
    if isinstance(exc, NotReadyError):
        return Failure(503, "UNAVAILABLE", str(exc))
    if isinstance(exc, OverloadedError):
        return Failure(503, "RESOURCE_EXHAUSTED", f"server overloaded: {exc}")
    if isinstance(exc, RuntimeFailure):
        return Failure(500, "INTERNAL", f"model failed: {exc}")
    return Failure(500, "INTERNAL", f"internal error: {type(exc).__name__}: {exc}")

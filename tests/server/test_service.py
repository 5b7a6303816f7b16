"""The protocol-independent model service: addressing, validation, queueing, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelcaliper.errors import PayloadTooLargeError, WireError
from modelcaliper.server.batching import BatchingParameters, OverloadedError
from modelcaliper.server.service import (
    ModelNotFoundError,
    ModelService,
    NotReadyError,
    RuntimeFailure,
    ServiceOptions,
    classify_failure,
)
from modelcaliper.server.timing import PhaseTimer
from modelcaliper.signature import Signature
from modelcaliper.wire.tensors import InferRequest


class FakeRuntime:
    """Adds one to ``x``; can be slowed down or made to fail."""

    platform = "fake"
    version = "1"

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.signature = Signature.from_dict({
            "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "dtype": "FP32", "shape": [-1, 2]},
                        {"name": "z", "dtype": "FP32", "shape": [-1]}],
        })
        self.delay_s = delay_s
        self.fail = fail
        self.calls = 0
        self.lock = threading.Lock()

    def predict(self, inputs):
        with self.lock:
            self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise ValueError("matmul shape mismatch")
        x = inputs["x"]
        return {"y": x + 1, "z": x.sum(axis=1)}

    def start_profiling(self, out_dir):
        raise NotImplementedError

    def stop_profiling(self):
        raise NotImplementedError


def make_service(runtime=None, *, ready=True, **options):
    service = ModelService(runtime or FakeRuntime(), model_name="ranker", version="3",
                           options=ServiceOptions(**options))
    service.ready = ready
    return service


def request(**kw):
    return InferRequest({"x": np.ones((2, 2), np.float32)}, model_name="ranker", **kw)


def test_infer_runs_the_model_and_times_phases():
    service = make_service()
    timer = PhaseTimer()
    response = asyncio.run(service.infer(request(request_id="r1"), timer))
    assert response.outputs["y"].tolist() == [[2.0, 2.0], [2.0, 2.0]]
    assert response.model_version == "3" and response.request_id == "r1"
    phases = timer.finish()
    assert {"queue", "compute", "total"} <= set(phases)
    service.close()


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"model_name": "other"}, "model 'other' is not served"),  # wrong model
        ({"model_version": "2"}, "no version 2"),  # wrong version
        ({"version_label": "canary"}, "no version label 'canary'"),  # unknown label
    ],
)
def test_wrong_addresses_are_not_found(kw, fragment):
    service = make_service()
    req = request()
    for key, value in kw.items():
        setattr(req, key, value)
    with pytest.raises(ModelNotFoundError, match=fragment):
        asyncio.run(service.infer(req, PhaseTimer()))
    service.close()


def test_not_ready_until_warmed_up():
    service = make_service(ready=False)
    with pytest.raises(NotReadyError, match="not ready"):
        asyncio.run(service.infer(request(), PhaseTimer()))
    service.warm_up(2)
    assert service.ready
    asyncio.run(service.infer(request(), PhaseTimer()))
    service.close()


def test_unserved_signature_is_a_client_error():
    service = make_service()
    with pytest.raises(WireError, match="signature 'other' is not served"):
        asyncio.run(service.infer(request(signature_name="other"), PhaseTimer()))
    asyncio.run(service.infer(request(signature_name="serving_default"), PhaseTimer()))
    service.close()


def test_phases_add_up_to_the_total():
    service = make_service(FakeRuntime(delay_s=0.01))
    async def main():
        timer = PhaseTimer()
        await service.infer(request(), timer)
        return timer.finish()

    phases = asyncio.run(main())
    parts = sum(v for k, v in phases.items() if k != "total")
    assert phases["compute"] >= 10.0
    assert parts == pytest.approx(phases["total"], abs=1e-6)  # contiguous laps, exactly
    service.close()


def test_matching_version_and_default_labels_are_accepted():
    service = make_service()
    for kw in ({"model_version": "3"}, {"version_label": "stable"}, {}):
        asyncio.run(service.infer(request(**kw), PhaseTimer()))
    service.close()


def test_output_filter_and_unknown_outputs():
    service = make_service()
    response = asyncio.run(service.infer(request(outputs=["z"]), PhaseTimer()))
    assert list(response.outputs) == ["z"]
    with pytest.raises(WireError, match="no output 'nope'"):
        asyncio.run(service.infer(request(outputs=["nope"]), PhaseTimer()))
    service.close()


def test_bad_inputs_are_client_errors_before_the_model_runs():
    runtime = FakeRuntime()
    service = make_service(runtime)
    bad = InferRequest({"x": np.array([["a", "b"]])}, model_name="ranker")
    with pytest.raises(WireError):
        asyncio.run(service.infer(bad, PhaseTimer()))
    assert runtime.calls == 0
    service.close()


def test_model_failures_become_runtime_failures_and_service_keeps_serving():
    runtime = FakeRuntime(fail=True)
    service = make_service(runtime)
    with pytest.raises(RuntimeFailure, match="ValueError: matmul shape mismatch"):
        asyncio.run(service.infer(request(), PhaseTimer()))
    runtime.fail = False
    assert asyncio.run(service.infer(request(), PhaseTimer())).outputs["y"].shape == (2, 2)
    service.close()


def test_full_queue_rejects_at_once_and_recovers():
    service = make_service(FakeRuntime(delay_s=0.05), model_threads=1, max_queued_requests=2)

    async def burst(n):
        return await asyncio.gather(*(service.infer(request(), PhaseTimer()) for _ in range(n)),
                                    return_exceptions=True)

    results = asyncio.run(burst(8))
    rejected = [r for r in results if isinstance(r, OverloadedError)]
    assert len(rejected) == 5  # one running, two queued, the rest refused
    assert "max_queued_requests=2" in str(rejected[0])
    assert not any(isinstance(r, OverloadedError) for r in asyncio.run(burst(2)))
    service.close()


def test_batched_service_merges_concurrent_requests():
    runtime = FakeRuntime()
    service = make_service(runtime, batching=BatchingParameters(max_batch_size=8,
                                                                batch_timeout_micros=20_000))

    async def main():
        timers = [PhaseTimer() for _ in range(4)]
        outs = await asyncio.gather(*(service.infer(request(), t) for t in timers))
        return outs, [t.finish() for t in timers]

    outs, phases = asyncio.run(main())
    assert runtime.calls == 1
    assert all(o.outputs["y"].shape == (2, 2) for o in outs)
    assert all("batch" in p and "compute" in p for p in phases)
    service.close()


@pytest.mark.parametrize(
    ("exc", "http", "grpc"),
    [
        (WireError("bad", tensor="x"), 400, "INVALID_ARGUMENT"),
        (PayloadTooLargeError("big"), 413, "RESOURCE_EXHAUSTED"),
        (ModelNotFoundError("nope"), 404, "NOT_FOUND"),
        (OverloadedError("full"), 503, "RESOURCE_EXHAUSTED"),
        (RuntimeFailure("boom"), 500, "INTERNAL"),
        (NotReadyError("warming"), 503, "UNAVAILABLE"),
        (KeyError("bug"), 500, "INTERNAL"),
    ],
)
def test_failures_map_to_statuses(exc, http, grpc):
    failure = classify_failure(exc)
    assert (failure.http_status, failure.grpc_code) == (http, grpc)


@pytest.mark.parametrize("execution", ["loop", "thread"])
def test_both_executions_answer_and_account_for_the_time(execution):
    service = make_service(FakeRuntime(delay_s=0.002), execution=execution)

    async def main():
        timer = PhaseTimer()
        response = await service.infer(request(), timer)
        return response, timer.finish()

    response, phases = asyncio.run(main())
    assert response.outputs["y"].shape == (2, 2)
    assert phases["compute"] >= 2.0
    assert sum(v for k, v in phases.items() if k != "total") == pytest.approx(
        phases["total"], abs=0.05)
    service.close()


def test_loop_execution_still_queues_and_sheds():
    service = make_service(FakeRuntime(delay_s=0.01), execution="loop", max_queued_requests=2)

    async def burst(n):
        return await asyncio.gather(*(service.infer(request(), PhaseTimer()) for _ in range(n)),
                                    return_exceptions=True)

    results = asyncio.run(burst(6))
    assert sum(isinstance(r, OverloadedError) for r in results) >= 1
    assert sum(not isinstance(r, Exception) for r in results) >= 1
    service.close()


def test_auto_execution_picks_the_loop_for_fast_models_and_threads_for_slow_ones():
    fast = make_service(FakeRuntime(), ready=False)
    fast.warm_up(4)
    assert fast._inline
    slow = make_service(FakeRuntime(delay_s=0.003), ready=False)
    slow.warm_up(4)
    assert not slow._inline
    fast.close()
    slow.close()


def test_unknown_execution_is_a_usage_error():
    from modelcaliper.errors import UsageError

    with pytest.raises(UsageError, match="execution must be one of"):
        make_service(execution="gpu")

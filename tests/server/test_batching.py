"""Server-side batching: TF Serving's parameters, merging, padding, splitting, overload."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelcaliper.errors import UsageError, WireError
from modelcaliper.server.batching import (
    Batcher,
    BatchingParameters,
    OverloadedError,
    parse_batching_parameters,
)


class RecordingModel:
    """Doubles its input and remembers the batch sizes it was called with."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batch_sizes: list[int] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, inputs):
        x = inputs["x"]
        with self.lock:
            self.batch_sizes.append(int(x.shape[0]))
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": x * 2}


def run(coro):
    return asyncio.run(coro)


def test_text_format_is_parsed(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text(
        "# TF Serving batching parameters\n"
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 500 }\n"
        "num_batch_threads { value: 4 }\n"
        "max_enqueued_batches { value: 7 }\n"
        "allowed_batch_sizes: 8\n"
        "allowed_batch_sizes: 32\n"
        "pad_variable_length_inputs: true\n"
    )
    params = parse_batching_parameters(path)
    assert params == BatchingParameters(32, 500, 4, 7, (8, 32), True)
    assert parse_batching_parameters("max_batch_size { value: 4 }").max_batch_size == 4


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max_batch_size { value: x }", "not a valid value"),  # not a number
        ("max_batch_size = 3", "cannot read"),  # wrong syntax
        ("max_batch_size { value: 0 }", "must be >= 1"),  # out of range
        ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4", "must equal max_batch_size"),
        (
            "max_batch_size { value: 8 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 4",
            "increasing",
        ),
        ("pad_variable_length_inputs: yes", "not a valid value"),
        ("max_batch_timeout { value: 3 }", "unknown batching parameter"),
    ],
)
def test_bad_parameters_are_usage_errors(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_batching_parameters(text)


def test_missing_file():
    with pytest.raises(UsageError, match="does not exist"):
        parse_batching_parameters("/nonexistent/batching.txt")


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows():
    model = RecordingModel()
    batcher = Batcher(model, BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000))

    async def main():
        xs = [np.full((2, 3), i, np.float32) for i in range(4)]
        results = await asyncio.gather(*(batcher.submit({"x": x}, 2) for x in xs))
        return xs, results

    xs, results = run(main())
    assert model.batch_sizes == [8]  # four requests of two rows fill one batch
    for x, (outputs, phases) in zip(xs, results, strict=True):
        assert np.array_equal(outputs["y"], x * 2)
        assert set(phases) == {"batch", "queue", "compute"}
    batcher.close()


def test_timeout_closes_a_partial_batch():
    model = RecordingModel()
    batcher = Batcher(model, BatchingParameters(max_batch_size=100, batch_timeout_micros=20_000))

    async def main():
        start = time.perf_counter()
        outputs, phases = await batcher.submit({"x": np.ones((3, 1))}, 3)
        return time.perf_counter() - start, phases

    elapsed, phases = run(main())
    assert model.batch_sizes == [3]
    assert elapsed >= 0.019  # waited for the batch timeout
    assert phases["batch"] >= 19_000_000
    batcher.close()


def test_allowed_batch_sizes_pad_with_the_first_row_and_outputs_are_trimmed():
    model = RecordingModel()
    params = BatchingParameters(
        max_batch_size=8, batch_timeout_micros=0, allowed_batch_sizes=(4, 8)
    )
    batcher = Batcher(model, params)
    outputs, _ = run(batcher.submit({"x": np.arange(3.0).reshape(3, 1)}, 3))
    assert model.batch_sizes == [4]
    assert outputs["y"].ravel().tolist() == [0.0, 2.0, 4.0]
    batcher.close()


def test_variable_length_inputs_need_padding_enabled():
    async def main(pad):
        batcher = Batcher(
            RecordingModel(),
            BatchingParameters(
                max_batch_size=4, batch_timeout_micros=50_000, pad_variable_length_inputs=pad
            ),
        )
        try:
            return await asyncio.gather(
                batcher.submit({"x": np.ones((1, 2))}, 1),
                batcher.submit({"x": np.ones((1, 3))}, 1),
                return_exceptions=True,
            )
        finally:
            batcher.close()

    failed = run(main(False))
    assert all(isinstance(r, WireError) for r in failed)
    assert "pad_variable_length_inputs" in str(failed[0])
    padded = run(main(True))
    assert padded[0][0]["y"].shape == (1, 3)  # zero-padded to the widest request
    assert padded[0][0]["y"].tolist() == [[2.0, 2.0, 0.0]]


def test_oversize_request_is_rejected():
    batcher = Batcher(RecordingModel(), BatchingParameters(max_batch_size=2))
    with pytest.raises(WireError, match="max_batch_size is 2"):
        run(batcher.submit({"x": np.ones((3, 1))}, 3))
    batcher.close()


def test_queue_overflow_rejects_at_once():
    model = RecordingModel(delay_s=0.2)
    batcher = Batcher(
        model, BatchingParameters(max_batch_size=1, num_batch_threads=1, max_enqueued_batches=2)
    )

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, 1)) for _ in range(6)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    rejected = [r for r in results if isinstance(r, OverloadedError)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert rejected and served
    assert "max_enqueued_batches=2" in str(rejected[0])
    batcher.close()


def test_model_errors_reach_every_request_of_the_batch():
    def broken(inputs):
        raise RuntimeError("kernel failed")

    batcher = Batcher(broken, BatchingParameters(max_batch_size=4, batch_timeout_micros=20_000))

    async def main():
        return await asyncio.gather(
            *(batcher.submit({"x": np.ones((1, 1))}, 1) for _ in range(2)), return_exceptions=True
        )

    results = run(main())
    assert all(isinstance(r, RuntimeError) and "kernel failed" in str(r) for r in results)
    batcher.close()

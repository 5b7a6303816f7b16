"""Model-error checks: NaN/inf outputs, wrong shapes and mismatches, with examples."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from modelcaliper.errors import DataError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.tensors import InferRequest
from modelcaliper.workload.expected import OutputChecker


def requests(n: int = 3, rows: int = 4) -> list[InferRequest]:
    return [InferRequest(inputs={"x": np.arange(rows, dtype=np.float32) + 10 * i,
                                 "country": np.array([b"us"] * rows, dtype=object)})
            for i in range(n)]


ROWS = [np.arange(i * 4, i * 4 + 4) for i in range(3)]
LABELS = {"score": np.arange(12, dtype=np.float64) / 10}


def checker(**options) -> OutputChecker:
    return OutputChecker.from_columns(requests(), ROWS, LABELS, positions=np.arange(12) + 100,
                                      **options)


@pytest.mark.parametrize(
    ("outputs", "kinds"),
    [
        # exactly the expected values
        ({"score": np.arange(4) / 10}, []),
        # within the tolerance
        ({"score": np.arange(4) / 10 + 1e-7}, []),
        # an [n, 1] output against a plain column is the same data
        ({"score": (np.arange(4) / 10).reshape(4, 1)}, []),
        # one value off
        ({"score": np.array([0.0, 0.1, 0.9, 0.3])}, ["model_mismatch"]),
        # a NaN is counted as such (and not also as a mismatch)
        ({"score": np.array([0.0, np.nan, 0.2, 0.3])}, ["model_nan"]),
        # an infinity too
        ({"score": np.array([0.0, 0.1, np.inf, 0.3])}, ["model_nan"]),
        # a NaN and, elsewhere, a wrong value: both counted
        ({"score": np.array([np.nan, 0.1, 0.2, 0.0])}, ["model_nan", "model_mismatch"]),
        # a wrong shape
        ({"score": np.zeros((4, 2))}, ["model_shape"]),
        # a missing output
        ({"other": np.zeros(4)}, ["model_shape"]),
    ],
)
def test_check_kinds(outputs, kinds):
    assert [e.kind for e in checker().check(outputs, 0)] == kinds


def test_example_names_row_inputs_expected_and_got():
    check = checker()
    (error,) = check.check({"score": np.array([0.4, 0.5, 0.6, 0.0])}, 1)
    # request 1 holds rows 4..7; its last row (source row 107) is wrong
    assert error.row == 107 and error.request_index == 1
    assert error.expected == "0.7" and error.got == "0.0"
    assert error.inputs == {"x": "13.0", "country": "us"}
    assert "differs in 1 of 4 value(s)" in error.message
    assert check.summary()["counts"] == {"model_nan": 0, "model_shape": 0, "model_mismatch": 1}
    assert check.summary()["examples"]["model_mismatch"][0]["row"] == 107


def test_nan_checks_need_no_expected_values():
    check = OutputChecker(requests(), outputs=[TensorSpec("score", "FP32", (-1, 1))])
    assert check.check({"score": np.zeros((4, 1))}, 0) == []
    kinds = [e.kind for e in check.check({"score": np.full((4, 1), np.nan)}, 0)]
    assert kinds == ["model_nan"]
    # the signature's shape is checked too: 3 rows for a 4-row request
    assert [e.kind for e in check.check({"score": np.zeros((3, 1))}, 2)] == ["model_shape"]


def test_from_model_runs_the_reference_now():
    calls = []

    def predict(inputs):
        calls.append(1)
        return {"y": inputs["x"] * 2}

    check = OutputChecker.from_model(requests(), predict, rtol=0, atol=0.5)
    assert len(calls) == 3  # computed before the run, once per request
    assert check.check({"y": np.arange(4) * 2 + 20.4}, 1) == []
    assert [e.kind for e in check.check({"y": np.arange(4) * 2.0}, 1)] == ["model_mismatch"]


def test_from_onnx_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from modelcaliper.server.runtimes import open_runtime
    from tests.models import build_onnx_mlp, mlp_inputs

    runtime = open_runtime(build_onnx_mlp(tmp_path / "m.onnx", n_inputs=8, hidden=(4,)))
    reqs = [InferRequest(inputs=mlp_inputs(5, n_inputs=8, seed=s)) for s in range(2)]
    check = OutputChecker.from_model(reqs, runtime.predict)
    served = runtime.predict(reqs[0].inputs)
    assert check.check(served, 0) == []
    (name,) = served
    broken = {name: served[name] + 1.0}
    assert [e.kind for e in check.check(broken, 0)] == ["model_mismatch"]


def test_expected_columns_by_name_or_map():
    sig = Signature.from_dict({"inputs": [{"name": "x", "dtype": "FP32"}],
                               "outputs": [{"name": "score", "dtype": "FP32"}]})
    columns = {"Score": np.zeros(3), "label": np.ones(3)}
    assert list(OutputChecker.expected_columns(columns, sig)) == ["score"]
    assert OutputChecker.expected_columns(columns, sig, {"score": "label"})["score"].tolist() == [
        1.0, 1.0, 1.0]
    with pytest.raises(DataError, match="no column for model input\\(s\\) 'score'"):
        OutputChecker.expected_columns({"label": np.ones(3)}, sig)


def test_examples_are_capped_and_counts_are_thread_safe():
    check = checker(max_examples=2)
    bad = {"score": np.full(4, 9.0)}

    def worker():
        for _ in range(200):
            check.check(bad, 0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert check.counts["model_mismatch"] == 800 and check.checked == 800
    assert len(check.examples["model_mismatch"]) == 2


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: OutputChecker(requests(), [{}]), "1 sets of expected outputs for 3 requests"),
        (lambda: OutputChecker(requests(), rtol=-1), "tolerances must be ≥ 0"),
        (lambda: OutputChecker.from_columns(requests(), ROWS, {}), "no expected-output columns"),
    ],
)
def test_bad_setup(make, fragment):
    with pytest.raises(DataError, match=fragment):
        make()


def test_request_index_out_of_range():
    with pytest.raises(IndexError):
        checker().check({"score": np.zeros(4)}, 3)

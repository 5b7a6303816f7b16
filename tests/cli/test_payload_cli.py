"""``caliper payload`` end to end: in-process runs, one real subprocess, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.main import main
from modelcaliper.cli.payload import resolve_encodings
from modelcaliper.wire import ENCODINGS
from modelcaliper.wire.compression import COMPRESSIONS

REPO = Path(__file__).resolve().parents[2]
RANKING = REPO / "examples" / "signatures" / "ranking.json"
ROW_KEYS = {
    "encoding",
    "compression",
    "batch_size",
    "request_bytes",
    "response_bytes",
    "encode_us",
    "decode_us",
    "wire_ms",
}

SIGNATURE = b"""{"inputs": [
  {"name": "price_usd", "dtype": "FP32"},
  {"name": "item_ctr_7d", "dtype": "FP32", "generator": {"kind": "uniform", "high": 0.2}},
  {"name": "user_country", "dtype": "BYTES",
   "generator": {"cardinality": 20, "length": [2, 2], "per_query": true}}
]}"""


@pytest.fixture
def sig(tmp_path) -> Path:
    path = tmp_path / "sig.json"
    path.write_bytes(SIGNATURE)
    return path


def check_schema(doc: dict, batch_sizes: set[int]) -> None:
    assert set(doc) >= {"rows", "what_if"}
    assert doc["rows"]
    for row in doc["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["encoding"] in ENCODINGS
        assert row["compression"] in COMPRESSIONS
        assert row["batch_size"] in batch_sizes
        assert row["request_bytes"] > 0 and row["response_bytes"] > 0
        assert row["encode_us"] > 0 and row["decode_us"] > 0 and row["wire_ms"] > 0
    assert {"shared_context", "short_names"} <= set(doc["what_if"])


def test_synthetic_run_in_process(sig, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(
        [
            "payload",
            "--signature",
            str(sig),
            "--synthetic",
            "--batch-size",
            "4,8",
            "--rows",
            "48",
            "--encoding",
            "v2-grpc",
            "tfserving-rest-columnar",
            "--compression",
            "none,gzip",
            "--link",
            "100mbit",
            "--json",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "batch size 4 " in captured.out and "batch size 8 " in captured.out
    assert "wire ms @100 Mbit/s" in captured.out
    doc = orjson.loads(out.read_bytes())
    check_schema(doc, {4, 8})
    assert {(r["encoding"], r["compression"]) for r in doc["rows"]} == {
        ("v2-grpc", "none"),
        ("v2-grpc", "gzip"),
        ("tfserving-rest columnar", "none"),
        ("tfserving-rest columnar", "gzip"),
    }
    assert doc["link_bits_per_s"] == 100e6
    # synthetic rows come in query groups, so the per-query input is found
    assert doc["what_if"]["shared_context"]["columns"] == ["user_country"]


def test_data_run_with_group_by(sig, tmp_path, capsys):
    data = tmp_path / "train.parquet"
    pq.write_table(
        pa.table(
            {
                "Price USD": [
                    float(i) for i in range(40)
                ],  # matched to price_usd by normalised name
                "item_ctr_7d": [0.01 * (i % 5) for i in range(40)],
                "user_country": [f"c{i // 10}" for i in range(40)],
                "query_id": [i // 10 for i in range(40)],
                "label": [i % 2 for i in range(40)],  # not a model input: ignored
            }
        ),
        data,
    )
    out = tmp_path / "out.json"
    code = main(
        [
            "payload",
            "--signature",
            str(sig),
            "--data",
            str(data),
            "--group-by",
            "query_id",
            "--batch-size",
            "4",
            "--encoding",
            "v2-rest json",
            "--compression",
            "none",
            "--json",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = orjson.loads(out.read_bytes())
    check_schema(doc, {4})
    (row,) = doc["rows"]
    # groups of 10 cut into 4 + 4 + 2 rows: requests never span two queries
    assert row["mean_rows"] == pytest.approx((4 + 4 + 2 + 4 + 4 + 2 + 4 + 4) / 8)
    assert doc["what_if"]["shared_context"]["columns"] == ["user_country"]


def test_signature_read_from_an_onnx_model(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 1], [0.1, 0.2, 0.3, 0.4])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["score"])],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out.json"
    code = main(
        [
            "payload",
            str(path),
            "--batch-size",
            "3",
            "--encoding",
            "v2-grpc",
            "--compression",
            "none",
            "--json",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = orjson.loads(out.read_bytes())
    (row,) = doc["rows"]
    # 3 rows x 4 float32 features travel as raw bytes, plus the message's framing
    assert row["request_bytes"] > 3 * 4 * 4
    assert row["mean_rows"] == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # no model and no signature file
        (["--synthetic"], "needs a signature"),
        # both row sources
        (
            ["--signature", "{sig}", "--synthetic", "--data", "x.parquet"],
            "not allowed with argument",
        ),
        # unknown encoding
        (["--signature", "{sig}", "--encoding", "soap"], "unknown --encoding 'soap'"),
        # unknown compression
        (["--signature", "{sig}", "--compression", "brotli"], "unknown compression 'brotli'"),
        # batch size below one
        (["--signature", "{sig}", "--batch-size", "0,5"], "--batch-size must be ≥ 1, got 0"),
        # not a list of integers
        (["--signature", "{sig}", "--batch-size", "big"], "--batch-size must be a comma-separated"),
        # a link that is not a rate
        (["--signature", "{sig}", "--link", "fast"], "--link must look like 100mbit or 1gbit"),
        # a level outside gzip's range
        (["--signature", "{sig}", "--compression", "gzip", "--level", "12"], "between 0 and 9"),
        # no rows
        (["--signature", "{sig}", "--rows", "0"], "--rows must be ≥ 1"),
        # a data file that does not exist
        (["--signature", "{sig}", "--data", "{tmp}/nope.parquet"], "does not exist"),
        # a data file that is not what it claims to be
        (["--signature", "{sig}", "--data", "{tmp}/junk.parquet"], "cannot read"),
        # data without the model's inputs
        (["--signature", "{sig}", "--data", "{tmp}/other.csv"], "no column for model input(s)"),
        # a group-by column the data lacks
        (
            ["--signature", "{sig}", "--data", "{tmp}/full.csv", "--group-by", "session"],
            "'session' is not",
        ),
        # a model path that does not exist
        (["{tmp}/model.onnx"], "does not exist"),
        # a signature file that does not exist
        (["--signature", "{tmp}/none.json"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(sig, tmp_path, capsys, args, fragment):
    (tmp_path / "junk.parquet").write_text("not parquet")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "full.csv").write_text("price_usd,item_ctr_7d,user_country\n1,0.1,de\n")
    argv = ["payload", *(a.format(sig=sig, tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert fragment in err


@pytest.mark.parametrize(
    ("given", "names"),
    [
        (None, ENCODINGS),  # default: all of them
        (["all"], ENCODINGS),  # explicitly all
        (["v2-grpc"], ("v2-grpc",)),  # exact name
        (["tfserving-rest rows"], ("tfserving-rest rows",)),  # name with a space
        (["TFServing-REST-Columnar"], ("tfserving-rest columnar",)),  # case and hyphen for space
        (["v2_rest_binary,v2-grpc"], ("v2-rest binary", "v2-grpc")),  # comma list, underscores
        (["v2-grpc", "v2-grpc"], ("v2-grpc",)),  # duplicates collapse
    ],
)
def test_encoding_names(given, names):
    assert resolve_encodings(given) == names


def caliper() -> str:
    return str(Path(sys.executable).parent / "caliper")


@pytest.mark.slow
def test_subprocess_run_on_the_ranking_signature(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            caliper(),
            "payload",
            "--synthetic",
            "--signature",
            str(RANKING),
            "--batch-size",
            "5,25",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = orjson.loads(out.read_bytes())
    check_schema(doc, {5, 25})
    # every encoding, every compression its transport allows, both batch sizes
    assert len(doc["rows"]) == 2 * (4 * 4 + 2 * 3)
    shared = doc["what_if"]["shared_context"]
    assert shared["group_by"] == "query_id" and len(shared["columns"]) == 21
    assert all(r["saving_bytes"] > 0 for r in shared["results"] if "error" not in r)
    assert all(r["saving_pct"] > 0 for r in doc["what_if"]["short_names"]["results"])
    assert "What if per-query context inputs" in proc.stdout


def test_subprocess_bad_input_exits_2(tmp_path):
    proc = subprocess.run(
        [caliper(), "payload", "--signature", str(RANKING), "--batch-size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: UsageError: --batch-size must be ≥ 1, got 0\n"

"""The shared data-selection flags: from flags to mapped, selected columns."""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcaliper.cli.dataflags import add_data_arguments, load_rows
from modelcaliper.cli.main import main
from modelcaliper.errors import DataError, UsageError
from modelcaliper.signature import Signature

SIGNATURE = Signature.from_dict({
    "inputs": [{"name": "price", "dtype": "FP32", "shape": [-1]},
               {"name": "country", "dtype": "BYTES", "shape": [-1]}],
})


@pytest.fixture
def data_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    table = pa.table({
        "query_id": np.repeat(np.arange(n // 20), 20),
        "price_usd": rng.uniform(0, 100, n).astype(np.float64),
        "country": rng.choice(["US", "DE", "FR"], n),
        "unused": np.arange(n),
    })
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=100)
    return path


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    return parser.parse_args(list(argv))


def test_selection_and_map_produce_one_column_per_input(data_file):
    args = parse("--data", str(data_file), "--where", "country == 'US'", "--sample", "60",
                 "--group-by", "query_id", "--map", "price=price_usd")
    rows = load_rows(args, SIGNATURE, default_rows=100)
    assert set(rows.columns) == {"price", "country", "query_id"}
    assert rows.columns["price"].dtype == np.float32  # coerced to the input's dtype
    assert set(rows.columns["country"].tolist()) == {b"US"}
    assert rows.group_by == "query_id"
    assert any("unused" in note for note in rows.notes)  # unused columns listed once


def test_query_size_builds_queries_of_exactly_k(data_file):
    args = parse("--data", str(data_file), "--query-size", "10", "--map", "price=price_usd")
    rows = load_rows(args, SIGNATURE, default_rows=100)
    ids, counts = np.unique(rows.columns[rows.group_by], return_counts=True)
    assert set(counts.tolist()) == {10}


def test_same_seed_same_rows_and_another_seed_differs(data_file):
    def sample(seed):
        args = parse("--data", str(data_file), "--sample", "50", "--data-seed", str(seed),
                     "--map", "price=price_usd")
        return load_rows(args, SIGNATURE, default_rows=100).columns["price"]

    assert np.array_equal(sample(1), sample(1))
    assert not np.array_equal(sample(1), sample(2))


def test_synthetic_rows_without_data():
    rows = load_rows(parse("--sample", "40", "--query-size", "8"), SIGNATURE, default_rows=10)
    assert rows.num_rows == 40 and rows.source == "synthetic"
    assert len(np.unique(rows.columns[rows.group_by])) == 5


@pytest.mark.parametrize(
    ("argv", "error", "fragment"),
    [
        (["--where", "price > 1"], UsageError, "selects from --data"),  # filter without data
        (["--data", "{data}", "--where", "nope > 1"], DataError, "no column 'nope'"),
        (["--data", "{data}", "--where", "price_usd > 1000", "--map", "price=price_usd"],
         DataError, "selects no rows"),
        (["--data", "{data}"], DataError, "price"),  # the input 'price' has no column
        (["--data", "{data}", "--where", "__import__('os')"], DataError, "function call"),
    ],
)
def test_bad_selections_are_one_line_errors(data_file, argv, error, fragment):
    args = parse(*[a.replace("{data}", str(data_file)) for a in argv])
    with pytest.raises(error, match=fragment):
        load_rows(args, SIGNATURE, default_rows=100)


def test_payload_command_takes_the_flags(data_file, tmp_path, capsys):
    sig = tmp_path / "sig.json"
    sig.write_text('{"inputs": [{"name": "price", "dtype": "FP32"}, '
                   '{"name": "country", "dtype": "BYTES"}]}')
    code = main(["payload", "--signature", str(sig), "--data", str(data_file),
                 "--map", "price=price_usd", "--where", "price_usd > 10", "--group-by",
                 "query_id", "--batch-size", "5", "--encoding", "v2-grpc", "--compression",
                 "none"])
    assert code == 0
    assert "v2-grpc" in capsys.readouterr().out

"""The --where parser: what it accepts, what it selects, and what it refuses."""

from __future__ import annotations

import pyarrow as pa
import pytest

from modelcaliper.errors import DataError
from modelcaliper.workload.filters import parse_where

TABLE = pa.table(
    {
        "id": [1, 2, 3, 4, 5],
        "country": ["US", "DE", "US", None, "FR"],
        "price": [5.0, 20.0, 30.0, None, 12.5],
        "active": [True, False, True, None, False],
        "tag": [b"a", b"b", b"a", b"c", b"b"],
        "day": pa.array([0, 1, 2, 3, 4], pa.int32()).cast(pa.date32()),
        "Price (USD)": [1, 2, 3, 4, 5],
        "hist": [[1], [2], [3], [4], [5]],
    }
)


def selected(text: str) -> list[int]:
    return TABLE.filter(parse_where(text, TABLE.schema).expression).column("id").to_pylist()


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("country == 'US' and price > 10", [3]),  # the example from the docs
        ("country = \"US\"", [1, 3]),  # '=' and double quotes
        ("price >= 12.5", [2, 3, 5]),  # a float constant
        ("10 < price", [2, 3, 5]),  # the constant on the left
        ("id != 2 and id <> 3", [1, 4, 5]),  # both spellings of not-equal
        ("not (price < 10) and price is not null", [2, 3, 5]),  # not over a group
        ("country in ['US', 'FR']", [1, 3, 5]),  # a list in brackets
        ("id in (1, 4)", [1, 4]),  # a list in parentheses
        ("country not in ['US']", [2, 5]),  # null is neither in nor outside a list
        ("country is null", [4]),  # null test
        ("active", [1, 3]),  # a boolean column on its own
        ("active == false", [2, 5]),  # booleans
        ("NOT active AND id > 1", [2, 5]),  # keywords in any case
        ("id = -1 or id > 4", [5]),  # negative numbers
        ("id > 1e0", [2, 3, 4, 5]),  # exponent notation
        ("tag == 'a'", [1, 3]),  # a string constant against a binary column (TFRecord)
        ("day >= '1970-01-03'", [3, 4, 5]),  # dates from ISO text
        ("`Price (USD)` > 3", [4, 5]),  # a column name in backquotes
        ("(id < 2 or id > 4) and (country == 'US' or country == 'FR')", [1, 5]),  # nesting
        ("price > id", [1, 2, 3, 5]),  # two columns
    ],
)
def test_valid_filters(text, ids):
    assert selected(text) == ids


def test_columns_are_reported():
    assert parse_where("price > 1 and country == 'US' or price < 0", TABLE.schema).columns == (
        "price",
        "country",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # code injection: calls, attributes, dunder names, statements
        ("__import__('os')", "looks like a function call"),
        ("__import__('os').system('ls')", "unexpected character '.'"),
        ("exec('1')", "looks like a function call"),
        ("id.__class__", "unexpected character '.'"),
        ("id > 1; import os", "unexpected character ';'"),
        ("lambda: 1", "unexpected character ':'"),
        ("[x for x in id]", "unexpected '\\['"),
        ("id > 1 if id else 2", "join conditions with 'and' / 'or'"),
        # arithmetic is not part of the language
        ("price * 2 > 10", "unexpected character '\\*'"),
        ("id + 1 > 2", "unexpected character '\\+'"),
        # unknown columns, with close names
        ("prices > 1", "no column 'prices'; close names: price"),
        ("zzz == 1", "no column 'zzz'; the data has 8 columns"),
        # type clashes name the column and the constant
        ("price > 'cheap'", "column 'price' holds double values and cannot be compared with "
                            "the string 'cheap'"),
        ("country == 3", "column 'country' holds string values"),
        ("country == price", "cannot be compared with column 'price'"),
        ("id in [1.5]", "1.5 can never equal a value of the integer column 'id'"),
        ("day > 'yesterday'", "'yesterday' is not a date32"),
        # structure
        ("price", "column 'price' \\(double\\) is not a condition"),
        ("'US'", "the constant 'US' is not a condition"),
        ("1 == 1", "compares two constants"),
        ("price == null", "using 'is null'"),
        ("price is 3", "write 'is null' or 'is not null'"),
        ("id in []", "at least one value"),
        ("id in [price]", "hold constants, not column 'price'"),
        ("id in 3", "write the values as \\[a, b, ...\\]"),
        ("(id > 1", "unexpected end at position 7; expected '\\)'"),
        ("id >", "unexpected end"),
        ("id > 1 and", "unexpected end"),
        ("id 1", "column 'id' \\(int64\\) is not a condition"),
        ("hist == 1", "column 'hist' holds list"),
        ("'unterminated", "unexpected character \"'\""),
        ("   ", "--where is empty"),
        ("(" * 70 + "id > 1" + ")" * 70, "nests deeper than 64 levels"),
    ],
)
def test_invalid_filters(text, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        parse_where(text, TABLE.schema)
    assert "\n" not in str(info.value)


def test_overlong_filter():
    with pytest.raises(DataError, match="characters long"):
        parse_where("id > 1 and " * 2000 + "id > 1", TABLE.schema)

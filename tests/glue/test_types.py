"""The declared types beyond strings, numbers and booleans: what each accepts, refuses, and how it is stored.

Timestamps, dates, exact decimals, float and map<string,T> (the rules, ``classify_line``); that the fast path
reaches the same decisions is tests/glue/test_lines.py's.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from ndjson_job.files import FileConverter
from ndjson_job.lines import LineRules, classify_line
from ndjson_job.reading import line_blocks
from ndjson_job.schema import arrow_type
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.files import FileVersion

SCHEMA = T.StructType(
    [
        T.StructField("at", T.TimestampType()),
        T.StructField("at_s", T.TimestampType(), metadata={"timestamp_format": "epoch_seconds"}),
        T.StructField("at_ms", T.TimestampType(), metadata={"timestamp_format": "epoch_millis"}),
        T.StructField("day", T.DateType()),
        T.StructField("price", T.DecimalType(38, 18)),
        T.StructField("amount", T.DecimalType(12, 2)),
        T.StructField("ratio", T.FloatType()),
        T.StructField("labels", T.MapType(T.StringType(), T.MapType(T.StringType(), T.TimestampType()))),
    ]
)
ARROW = pa.schema(list(arrow_type(SCHEMA)))


# Without the map: Arrow's reader reads these lines in bulk (a schema with a map is the rules' alone).
ARROW_NO_MAP = pa.schema([f for f in ARROW if f.name != "labels"])


def _make_rules(schema: pa.Schema = ARROW, **options) -> LineRules:
    return LineRules(schema=schema, day="2026-11-24", options=ConversionOptions(**options))


def _rows(lines: list[str], schema: pa.Schema = ARROW, **options) -> tuple[list[dict], list[dict]]:
    """The rows and quarantined lines of a file of ``lines``, through the job's converter (bulk and rules)."""
    body = ("\n".join(lines) + "\n").encode()
    converter = FileConverter(FileVersion("b", "k", "etag", len(body)), _make_rules(schema, **options))
    blocks = [converter.convert(block) for block in line_blocks([body], prefix_bytes=64, block_bytes=1 << 20)]
    rows = [row for b in blocks if b.rows is not None for row in b.rows.to_pylist()]
    return rows, [line for b in blocks for line in b.bad_lines]


def _rescued(text: str, field: str, value: str) -> object:
    """The rescued value of ``field``, parsed back: a string is rescued as its text, anything else as its JSON."""
    raw = json.loads(text)[field]
    return raw if value.startswith('"') else json.loads(raw, parse_float=Decimal)


def _written(value: str) -> object:
    return json.loads(value, parse_float=Decimal)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
        ("2026-11-24T10:00:00+02:00", datetime(2026, 11, 24, 8, tzinfo=UTC)),
        ("2026-11-24T01:00:00.25-0130", datetime(2026, 11, 24, 2, 30, 0, 250000, tzinfo=UTC)),
        ("2026-11-24 10:00:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-24T10:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ],
)
def test_an_iso_timestamp_with_or_without_offset_is_stored_in_utc(text, expected):
    lines = [json.dumps({"at": text})] * 10 + [json.dumps({"at": text, "ratio": "x"})]  # bulk, then the rules
    rows, bad = _rows(lines, ARROW_NO_MAP)
    assert [row["at"] for row in rows] == [expected] * 11
    assert [row["_rescued_data"] is not None for row in rows] == [False] * 10 + [True]
    assert not bad


def test_epoch_seconds_and_milliseconds_are_read_where_the_field_says_so():
    line = {"at_s": 1764000000.5, "at_ms": 1764000000123, "at": 1764000000}
    rows, _ = _rows([json.dumps(line)])
    bulk, _ = _rows([json.dumps({k: v for k, v in line.items() if k != "at"})] * 10, ARROW_NO_MAP)
    assert [(row["at_s"], row["at_ms"]) for row in bulk] == [(rows[0]["at_s"], rows[0]["at_ms"])] * 10
    assert rows[0]["at_s"] == datetime(2025, 11, 24, 16, 0, 0, 500000, tzinfo=UTC)
    assert rows[0]["at_ms"] == datetime(2025, 11, 24, 16, 0, 0, 123000, tzinfo=UTC)
    assert rows[0]["at"] is None  # an ISO field given a number: not a timestamp
    assert json.loads(rows[0]["_rescued_data"]) == {"at": "1764000000"}


def test_a_decimal_is_exact_where_a_double_would_round():
    price = "12345678901234567.123456789012345678"
    assert Decimal(float(price)) != Decimal(price)  # a double cannot hold it
    lines = ['{"price": ' + price + "}", '{"price": "' + price + '"}'] * 5 + ['{"price": ' + price + ', "ratio": "x"}']
    rows, _ = _rows(lines, ARROW_NO_MAP)  # ten read in bulk, the last decided by the rules
    assert [row["price"] for row in rows] == [Decimal(price)] * 11
    assert [row["_rescued_data"] is not None for row in rows] == [False] * 10 + [True]


@pytest.mark.parametrize("value", ["1.255", '"1.255"', "10000000000", "1e-3", '"1_0"', '" 1"', "true"])
def test_a_decimal_that_does_not_fit_exactly_is_refused_not_rounded(value):
    row, rescued, _ = classify_line('{"amount": ' + value + "}", _make_rules())
    assert row["amount"] is None
    assert set(json.loads(rescued)) == {"amount"}
    assert _rescued(rescued, "amount", value) == _written(value)
    assert classify_line('{"amount": ' + value + "}", _make_rules(read_mode="strict"))[2] == "type mismatch: amount"


def test_a_float_beyond_float32_is_refused_never_stored_as_infinity():
    lines = ['{"ratio": 3.4028234663852886e38}', '{"ratio": 3.40282357e38}', '{"ratio": -1e39}', '{"ratio": 1e400}']
    rows, _ = _rows(lines)
    assert [row["ratio"] for row in rows] == [3.4028234663852886e38, None, None, None]
    assert [_rescued(row["_rescued_data"], "ratio", "0") for row in rows[1:]] == [
        Decimal("3.40282357e38"),
        Decimal("-1e39"),
        Decimal("1e400"),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("at", '"2026-02-30T10:00:00Z"'),
        ("at", '"2026-11-24T10:00:00.1234567Z"'),
        ("at", '"0001-01-01T00:30:00+01:00"'),
        ("at_s", "1e-7"),
        ("at_ms", "253402300800000"),
        ("day", '"2026-11-24T00:00:00Z"'),
        ("labels", '{"a": {"b": "yesterday"}}'),
        ("labels", '{"a": 1}'),
    ],
)
def test_a_value_that_does_not_parse_is_rescued_or_quarantined_naming_the_field(field, value):
    line = '{"ratio": 0.5, "' + field + '": ' + value + "}"
    rows, bad = _rows([line])
    assert rows[0][field] in (None, [("a", None)], [("a", [("b", None)])])
    assert set(json.loads(rows[0]["_rescued_data"])) == {field}
    assert _rescued(rows[0]["_rescued_data"], field, value) == _written(value)
    rows, bad = _rows([line], read_mode="strict")
    assert (rows, [b["reason"] for b in bad]) == ([], [f"type mismatch: {field}"])


def test_a_map_keeps_every_key_and_a_null_value_apart_from_a_missing_one():
    line = {"labels": {"web": {"first": "2026-11-24T10:00:00Z", "last": None}, "app": {}}, "day": "2024-02-29"}
    rows, bad = _rows([json.dumps(line)])
    assert rows[0]["labels"] == [
        ("web", [("first", datetime(2026, 11, 24, 10, tzinfo=UTC)), ("last", None)]),
        ("app", []),
    ]
    assert (rows[0]["day"], rows[0]["_rescued_data"], bad) == (date(2024, 2, 29), None, [])


def test_json_minus_zero_is_the_same_number_in_bulk_and_by_the_rules():
    # Arrow reads -0 as the double -0.0; the rules must not turn it into 0.0 (an integer zero) for the same line.
    lines = ['{"ratio": -0}'] * 10 + ['{"ratio": -0, "at": 1}']  # ten read in bulk, one decided by the rules
    rows, _ = _rows(lines, ARROW_NO_MAP)
    assert [math.copysign(1, row["ratio"]) for row in rows] == [-1.0] * 11
    assert [row["_rescued_data"] is not None for row in rows] == [False] * 10 + [True]

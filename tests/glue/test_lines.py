"""The job's line handling without Spark: Arrow's bulk reader plus the one-by-one fallback.

The fast path (``bulk``: Arrow reading a block's lines in chunks) must never
change an outcome: every file must come out exactly as if each line had been
decided by ``classify_line`` alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from ndjson_job import bulk
from ndjson_job.bulk import BlockLines, ranges_between, read_block
from ndjson_job.files import FileConverter
from ndjson_job.lines import DUPLICATE_KEYS, LineRules, classify_line, conform
from ndjson_job.reading import line_blocks
from ndjson_job.schema import arrow_type
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import RESCUED_COLUMN
from ndjson_pipeline.files import FileVersion
from tools.sample_data import make_event, ndjson_body

SCHEMA = T.StructType.fromJson(
    json.loads((Path(__file__).resolve().parents[2] / "glue_scripts" / "schemas" / "events.json").read_text())
)
ARROW_SCHEMA = pa.schema(list(arrow_type(SCHEMA)))
RULES = LineRules(schema=ARROW_SCHEMA, day="2026-11-24")


def _event(n: int, **changes) -> str:
    event = make_event(random.Random(n), f"e-{n}")
    event.update(changes)
    return json.dumps(event)


# Lines Arrow's reader refuses for different reasons, some with a row number in its error and some without.
AWKWARD = {
    "malformed": '{"event_id": "x", ',
    "two documents": _event(1) + " " + _event(2),
    "null": "null",
    "array": "[1, 2]",
    "float for long": _event(3, count=1.5),
    "integral float for long": _event(4, count=2.0),
    "long out of range": _event(5, count=2**70),
    "number for string": _event(6, event_type=7),
    "bool for double": _event(7, value=True),
    "unknown top-level field": _event(8, extra={"a": [1]}),
    "unknown nested field": _event(9, user={"id": "u", "country": "DE", "age": 3, "vip": True}),
    "lone surrogate": '{"event_id": "\\ud800"}',
    "NaN": '{"event_id": "n", "value": NaN}',
    "Infinity": '{"event_id": "i", "value": -Infinity}',
    "Inf": '{"event_id": "i", "value": Inf}',
    "vertical tab around": "\x0b" + _event(11) + "\x0c",
    "double out of range": '{"event_id": "big", "value": 1e400}',
    "duplicate key": '{"event_id": "a", "event_id": "b"}',
    "nested duplicate key": '{"event_id": "d", "user": {"id": "a", "country": "DE", "id": "b"}}',
    "empty object": "{}",
    # Arrow reads an integer literal too big for a double as infinity, 1e400 as an error: both must end alike.
    "integer too big for a double": '{"event_id": "huge", "value": ' + "9" * 400 + "}",
    "nested integer too big for a double": _event(13, items=[{"sku": "s", "qty": 1, "price": int("7" * 330)}]),
    "NUL in a string": '{"event_id": "n\x00ul"}',
    "control byte in a string": '{"event_id": "c\x01"}',
}


def _typed_field(name: str, spark_type: T.DataType, **metadata: str) -> T.StructField:
    return T.StructField(name, spark_type, metadata=metadata)


# Every type the declared schema supports besides the sample's, at the top level and nested in structs and arrays.
TYPED = T.StructType(
    [
        _typed_field("at", T.TimestampType()),
        _typed_field("at_s", T.TimestampType(), timestamp_format="epoch_seconds"),
        _typed_field("at_ms", T.TimestampType(), timestamp_format="epoch_millis"),
        _typed_field("day", T.DateType()),
        _typed_field("amount", T.DecimalType(12, 2)),
        _typed_field("ratio", T.FloatType()),
        _typed_field(
            "lines",
            T.ArrayType(
                T.StructType(
                    [
                        _typed_field("price", T.DecimalType(38, 18)),
                        _typed_field("seen", T.ArrayType(T.TimestampType())),
                        _typed_field("due", T.DateType()),
                    ]
                )
            ),
        ),
    ]
)
# The same with maps: Arrow's reader has none, so these lines are all the rules' (bulk's module docstring).
TYPED_MAPS = T.StructType(
    [
        *TYPED.fields,
        _typed_field("labels", T.MapType(T.StringType(), T.LongType())),
        _typed_field("stamps", T.MapType(T.StringType(), T.StructType([_typed_field("at", T.TimestampType())]))),
    ]
)
# JSON text of values of each type: (values the type holds, values it refuses), written as a line may write them.
TYPED_VALUES = {
    "timestamp": (
        [
            *['"2026-11-24T10:00:00Z"', '"2026-11-24T10:00:00+02:00"', '"2026-11-24 10:00:00"', '"2026-11-24T23:59"'],
            *['"2026-11-24T10:00:00.5-0130"', '"2026-11-24T10:00:00.123456Z"', '"0001-01-01T00:00:00Z"'],
            '"9999-12-31T23:59:59.999999Z"',
        ],
        [
            *['"2026-11-24T10:00:00.1234567Z"', '"2026-02-30T10:00:00Z"', '"2026-11-24T24:00:00Z"'],
            *['"2026-11-24T10:00:60Z"', '"2026-11-24T10:00:00+24:00"', '"2026-11-24T10:00+02:60"'],
            *['"0000-01-01T00:00:00Z"', '"0001-01-01T00:30:00+01:00"', '"9999-12-31T23:30:00-01:00"', '"2026-11-24"'],
            *['"20261124T100000Z"', '"2026-11-24T10:00:00z"', '"2026-11-24T10:00:00+02"', '" 2026-11-24T10:00:00Z"'],
            *['"\u0662026-11-24T10:00:00Z"', '""', "1700000000", "true", '{"a": 1}'],
        ],
    ),
    "epoch": (
        [
            *["1700000000", "1700000000.5", '"1700000000"', "-1.25", "0", "2e3", "-62135596800", '"+1.5"', "null"],
        ],
        [
            "1e-6",  # a microsecond as seconds, a thousandth of one as milliseconds
            "253402300799.999999",
            *["1e-7", "1700000000123.4567", "253402300800", "-62135596801", "1e300", "-1e300", '"x"', "true"],
            *['"2026-11-24T10:00:00Z"', "1.0000000000000000000000000001", '" 1"'],
        ],
    ),
    "date": (
        ['"2026-11-24"', '"0001-01-01"', '"9999-12-31"', '"2024-02-29"'],
        [
            *['"0000-01-01"', '"2026-02-29"', '"2026-11-24T00:00:00Z"', '"20261124"', "20261124", '"2026-1-4"'],
            *['"2026-13-01"', '"\u0662026-11-24"'],
        ],
    ),
    "decimal": (
        [
            *["1", "-1", "0.1", '"0.10"', "1.250", "9999999999.99", '"1e2"', '"1E-2"', '".5"', '"+1"', '"1."'],
            "-0.0",
        ],
        [
            *["1.255", '"1.255"', "10000000000", '"1e-3"', '" 1"', '"1_0"', '"NaN"', "true", "0.30000000000000004"],
            *["1e999999999", '"1.2.3"', '"-"', "123456789012.34", "12345678901234567.123456789012345678"],
        ],
    ),
    "float": (
        ["1.5", "3.4028234663852886e38", "3.4028235e38", "1e-50", "1", "0.1", "-0", "-0.0"],
        ["3.40282357e38", "1e39", "-1e39", '"1"', "true", str(2**200)],
    ),
}


def _typed_value(rng: random.Random, spark_type: T.DataType, time_format: str | None) -> str:
    if isinstance(spark_type, T.StructType):
        fields = [f for f in spark_type.fields if rng.random() < 0.8]
        return (
            "{"
            + ",".join(
                f'"{f.name}":{_typed_value(rng, f.dataType, f.metadata.get("timestamp_format"))}' for f in fields
            )
            + "}"
        )
    if isinstance(spark_type, T.ArrayType):
        return (
            "["
            + ",".join(_typed_value(rng, spark_type.elementType, time_format) for _ in range(rng.randint(0, 3)))
            + "]"
        )
    if isinstance(spark_type, T.MapType):
        keys = rng.sample(["a", "b", "\u00e9", "\\ud800", ""], k=rng.randint(0, 3))
        return "{" + ",".join(f'"{k}":{_typed_value(rng, spark_type.valueType, time_format)}' for k in keys) + "}"
    if isinstance(spark_type, T.LongType):
        return rng.choice(["1", "-7", "1.5", '"x"', str(2**70)])
    kind = {T.DateType: "date", T.DecimalType: "decimal", T.FloatType: "float"}.get(type(spark_type), "timestamp")
    if kind == "timestamp" and time_format:
        kind = "epoch"
    # Mostly good values, so that the bulk reader reads chunks and the bad ones are left to the rules one by one.
    good, bad = TYPED_VALUES[kind]
    return rng.choice(good if rng.random() < 0.97 else bad)


def _typed_lines(schema: T.StructType, seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [_typed_value(rng, schema, None) for _ in range(count)]


def _stripped(line: str) -> str:
    """What the job hands classify_line: the line without blank characters around it, JSON's and \\f, \\v."""
    return line.strip(" \t\r\n\f\x0b")


def _reference(lines: list[str], rules: LineRules) -> tuple[list[dict], dict[int, str]]:
    """Rows and quarantine reasons when every line goes through classify_line."""
    rows, reasons = [], {}
    for number, line in enumerate(lines, start=1):
        row, rescued, reason = classify_line(_stripped(line), rules)
        if reason:
            reasons[number] = reason
        else:
            rows.append({**row, RESCUED_COLUMN: rescued} if rules.read_mode == "rescue" else row)
    # As the rules' rows are written: a double declared float is stored as a float32, a timestamp in UTC.
    return pa.Table.from_pylist(rows, schema=rules.row_schema).to_pylist(), reasons


def _sorted(rows: list[dict]) -> list[str]:
    # repr, not str: a Decimal's scale and a timestamp's zone are part of the value.
    return sorted(json.dumps(r, sort_keys=True, default=repr) for r in rows)


class _Converted:
    """A whole body through the job's own blocks and converter: its rows, quarantined lines and counts."""

    def __init__(self, body: bytes, rules: LineRules, block_bytes: int = 1 << 20) -> None:
        converter = FileConverter(FileVersion("b", "k", "etag", len(body)), rules)
        blocks = [converter.convert(block) for block in line_blocks([body], prefix_bytes=64, block_bytes=block_bytes)]
        tables = [b.rows for b in blocks if b.rows is not None]
        self.rows = (
            pa.concat_tables(tables) if tables else rules.row_schema.append(pa.field("dt", pa.string())).empty_table()
        )
        self.bad_lines = [line for b in blocks for line in b.bad_lines]
        self.result = converter.finish()
        self.rows_in, self.rows_out, self.rows_rescued = converter.rows_in, converter.rows_out, converter.rows_rescued


@pytest.mark.parametrize("block_bytes", [1 << 20, 4096], ids=["one block", "many blocks"])
@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_decides_every_line_as_the_one_by_one_rules_do(read_mode, seed, block_bytes):
    rng = random.Random(seed)
    lines = [_event(n) for n in range(300)]
    for _, line in rng.sample(sorted(AWKWARD.items()), k=8 + seed):
        lines.insert(rng.randrange(len(lines) + 1), line)
    rules = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode=read_mode))

    result = _Converted(("\n".join(lines) + "\n").encode(), rules, block_bytes)

    rows, reasons = _reference(lines, rules)
    assert _sorted(result.rows.drop_columns(["dt"]).to_pylist()) == _sorted(rows)
    assert {b["line_number"]: b["reason"] for b in result.bad_lines} == reasons
    assert (result.rows_in, result.rows_out) == (len(lines), len(rows))
    assert result.rows_rescued == sum(1 for r in rows if r.get(RESCUED_COLUMN))


@pytest.mark.parametrize("schema", [TYPED, TYPED_MAPS], ids=["typed", "typed with maps"])
@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
@pytest.mark.parametrize("seed", range(3))
def test_the_fast_path_decides_values_of_every_type_as_the_rules_do(schema, read_mode, seed, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 4096)  # many chunks: refusals split some and leave others whole
    lines = _typed_lines(schema, seed, 600)
    rules = LineRules(
        schema=pa.schema(list(arrow_type(schema))), day="2026-11-24", options=ConversionOptions(read_mode=read_mode)
    )

    result = _Converted(("\n".join(lines) + "\n").encode(), rules, block_bytes=16 * 1024)

    rows, reasons = _reference(lines, rules)
    assert _sorted(result.rows.drop_columns(["dt"]).to_pylist()) == _sorted(rows)
    assert {b["line_number"]: b["reason"] for b in result.bad_lines} == reasons
    assert (result.rows_in, result.rows_out) == (len(lines), len(rows))
    assert 0 < len(reasons) < len(lines) if read_mode == "strict" else not reasons


def test_every_awkward_line_gets_its_outcome():
    reasons = {name: classify_line(_stripped(line), RULES)[2] for name, line in AWKWARD.items()}
    malformed = {"malformed", "two documents", "NaN", "Infinity", "Inf"}
    assert {reasons[name] for name in malformed} == {"malformed JSON"}
    assert reasons["NUL in a string"] == "malformed JSON: control character U+0000"
    assert reasons["control byte in a string"] == "malformed JSON: control character U+0001"
    assert reasons["null"] == "not a JSON object: scalar or null"
    assert reasons["array"] == "not a JSON object: array"
    kept = {name for name, reason in reasons.items() if reason is None}
    quarantined = malformed | {"null", "array", "NUL in a string", "control byte in a string"}
    assert kept == set(AWKWARD) - quarantined

    row, rescued, _ = classify_line(AWKWARD["unknown nested field"], RULES)
    assert row["user"] == {"id": "u", "country": "DE", "age": 3}
    assert json.loads(json.loads(rescued)["user"])["vip"] is True
    row, rescued, _ = classify_line(AWKWARD["long out of range"], RULES)
    assert row["count"] is None
    assert json.loads(rescued) == {"count": str(2**70)}
    for name in ("double out of range", "integer too big for a double"):
        row, rescued, _ = classify_line(AWKWARD[name], RULES)
        assert row["value"] is None, name
        assert list(json.loads(rescued)) == ["value"], name


def test_a_key_given_twice_keeps_its_last_value_and_is_rescued_or_quarantined():
    row, rescued, reason = classify_line(AWKWARD["duplicate key"], RULES)
    assert (row["event_id"], reason) == ("b", None)
    assert json.loads(json.loads(rescued)[DUPLICATE_KEYS]) == {"event_id": ["a"]}
    row, rescued, _ = classify_line(AWKWARD["nested duplicate key"], RULES)
    assert row["user"] == {"id": "b", "country": "DE", "age": None}
    assert json.loads(json.loads(rescued)[DUPLICATE_KEYS]) == {"id": ["a"]}
    strict = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode="strict"))
    assert classify_line(AWKWARD["duplicate key"], strict) == (None, None, "duplicate key: event_id")


def test_an_integer_too_big_for_a_double_is_never_stored_as_infinity():
    strict = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode="strict"))
    lines = [AWKWARD["integer too big for a double"], AWKWARD["nested integer too big for a double"], _event(1)]
    body = ("\n".join(lines) + "\n").encode()
    rescued = _Converted(body, RULES)
    values = rescued.rows.column("value").to_pylist()
    prices = [item["price"] for items in rescued.rows.column("items").to_pylist() for item in items or []]
    assert not [v for v in values + prices if v is not None and abs(v) == float("inf")]
    assert rescued.rows_rescued == 2
    assert [b["reason"] for b in _Converted(body, strict).bad_lines] == ["type mismatch: value", "type mismatch: items"]


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
def test_a_file_where_every_line_is_refused_is_decided_line_by_line(read_mode):
    lines = [_event(n, event_type=n) for n in range(500)]  # a number where a string is declared, on every line
    rules = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode=read_mode))
    result = _Converted("\n".join(lines).encode(), rules)
    rows, reasons = _reference(lines, rules)
    assert _sorted(result.rows.drop_columns(["dt"]).to_pylist()) == _sorted(rows)
    assert {b["line_number"]: b["reason"] for b in result.bad_lines} == reasons
    assert (result.rows_out, result.rows_rescued) == ((500, 500) if read_mode == "rescue" else (0, 0))


def test_conform_nulls_only_what_does_not_fit():
    items = pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int64())]))
    value, fits = conform([{"sku": "a", "qty": 1}, {"sku": 2, "qty": 3}], items)
    assert (value, fits) == ([{"sku": "a", "qty": 1}, {"sku": None, "qty": 3}], False)
    assert conform(3, pa.float64()) == (3.0, True)
    assert conform(True, pa.int64()) == (None, False)
    assert conform(None, items) == (None, True)


def test_the_bulk_reader_reads_clean_lines_in_chunks_and_leaves_every_bad_one_to_the_rules(monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 16 * 1024)  # many chunks, so refusals land in several of them
    body, kinds = ndjson_body(2000, seed=3, bad_fraction=0.05)
    block = BlockLines(body)
    odd = block.odd_lines()
    read = read_block(block, ranges_between(odd, block.count), ARROW_SCHEMA, threads=2)
    assert read.table is not None
    assert read.lines == sorted(read.lines)
    assert sorted(read.lines + read.left + odd) == list(range(block.count))
    assert read.table.num_rows == len(read.lines)
    # What it did not read is off (it has something to rescue, or it is quarantined), or a clean line that shared a
    # chunk of a few lines with an off one: such a chunk is handed over whole.
    off = clean = 0
    for i in [*read.left, *odd]:
        _, rescued, reason = classify_line(block.line(i).decode(), RULES)
        off += rescued is not None or reason is not None
        clean += rescued is None and reason is None
    assert off == len(read.left) + len(odd) - clean == 2000 - kinds["good"]
    assert clean <= bulk._SMALLEST_SPLIT * off


def test_a_block_is_cut_into_chunks_of_whole_lines_that_cover_each_line_once(monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK_BYTES", 64)
    lines = [b"{" + b"x" * n + b"}" for n in (5, 30, 1, 60, 2, 2, 90)]
    block = BlockLines(b"\n".join(lines))
    chunks = list(block.chunks(0, block.count))
    assert [line for c in chunks for line in range(c.first_line, c.first_line + c.lines)] == list(range(len(lines)))
    for chunk in chunks:
        assert block.data[chunk.start : chunk.end] == b"\n".join(
            lines[chunk.first_line : chunk.first_line + chunk.lines]
        )
        assert chunk.end - chunk.start <= 64 + 92 or chunk.lines == 1  # at most one line past the size


def test_odd_lines_are_what_arrow_must_not_see():
    block = BlockLines(b'{"a":1}\n\n  {"b":2}\n[1]\n{"c":3}\r\n{"d":"\x00"}\nnull\n{"e":5} \n{"f":6}')
    assert block.odd_lines() == [1, 2, 3, 5, 6, 7]  # blank, padded, array, NUL, null, trailing blank

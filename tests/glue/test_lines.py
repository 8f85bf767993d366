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
    return rows, reasons


def _sorted(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


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

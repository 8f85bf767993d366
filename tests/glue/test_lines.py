"""The job's line handling without Spark: Arrow's bulk reader plus the one-by-one fallback.

The fast path (``bulk_parse``) must never change an outcome: every file must come
out exactly as if each line had been decided by ``classify_line`` alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from ndjson_job.files import convert_file
from ndjson_job.lines import LineRules, _blocks, bulk_parse, classify_line, conform
from ndjson_job.schema import RESCUED_COLUMN, arrow_type
from ndjson_pipeline.conversion import ConversionOptions
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
    "empty object": "{}",
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


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_decides_every_line_as_the_one_by_one_rules_do(read_mode, seed):
    rng = random.Random(seed)
    lines = [_event(n) for n in range(300)]
    for _, line in rng.sample(sorted(AWKWARD.items()), k=8 + seed):
        lines.insert(rng.randrange(len(lines) + 1), line)
    rules = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode=read_mode))

    result = convert_file("s3://b/k", ("\n".join(lines) + "\n").encode(), rules)

    rows, reasons = _reference(lines, rules)
    assert _sorted(result.rows.drop_columns(["dt"]).to_pylist()) == _sorted(rows)
    assert {b["line_number"]: b["reason"] for b in result.bad_lines} == reasons
    assert (result.rows_in, result.rows_out) == (len(lines), len(rows))
    assert result.rows_rescued == sum(1 for r in rows if r.get(RESCUED_COLUMN))


def test_every_awkward_line_gets_its_outcome():
    reasons = {name: classify_line(_stripped(line), RULES)[2] for name, line in AWKWARD.items()}
    malformed = {"malformed", "two documents", "NaN", "Infinity", "Inf", "duplicate key"}
    assert {reasons[name] for name in malformed} == {"malformed JSON"}
    assert reasons["null"] == "not a JSON object: scalar or null"
    assert reasons["array"] == "not a JSON object: array"
    kept = {name for name, reason in reasons.items() if reason is None}
    assert kept == set(AWKWARD) - malformed - {"null", "array"}

    row, rescued, _ = classify_line(AWKWARD["unknown nested field"], RULES)
    assert row["user"] == {"id": "u", "country": "DE", "age": 3}
    assert json.loads(json.loads(rescued)["user"])["vip"] is True
    row, rescued, _ = classify_line(AWKWARD["long out of range"], RULES)
    assert row["count"] is None
    assert json.loads(rescued) == {"count": str(2**70)}
    row, rescued, _ = classify_line(AWKWARD["double out of range"], RULES)
    assert row["value"] is None
    assert list(json.loads(rescued)) == ["value"]


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
def test_a_file_where_every_line_is_refused_is_decided_line_by_line(read_mode):
    lines = [_event(n, event_type=n) for n in range(500)]  # a number where a string is declared, on every line
    rules = LineRules(schema=ARROW_SCHEMA, day="2026-11-24", options=ConversionOptions(read_mode=read_mode))
    result = convert_file("s3://b/k", "\n".join(lines).encode(), rules)
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


def test_bulk_parse_accepts_clean_lines_in_one_read_and_finds_bad_ones_among_many():
    body, kinds = ndjson_body(2000, seed=3, bad_fraction=0.05)
    lines = [line.encode() for line in body.decode().splitlines()]
    candidates = [line for line in lines if line.startswith(b"{") and line.endswith(b"}")]
    tables, accepted, refused = bulk_parse(candidates, ARROW_SCHEMA)
    assert sorted(accepted + refused) == list(range(len(candidates)))
    assert sum(t.num_rows for t in tables) == len(accepted) == kinds["good"]
    # Every refused line really is off: it has something to rescue, or it is quarantined.
    for i in refused:
        _, rescued, reason = classify_line(candidates[i].decode(), RULES)
        assert rescued is not None or reason is not None, candidates[i]


def test_blocks_cover_every_line_once_and_stay_under_their_size():
    lines = [b"x" * n for n in (5, 30, 1, 60, 2, 2, 90)]
    blocks = _blocks(lines, block_bytes=64)
    covered = [i for start, end in reversed(blocks) for i in range(start, end)]
    assert covered == list(range(len(lines)))
    assert all(sum(len(lines[i]) + 1 for i in range(s, e)) <= 64 or e - s == 1 for s, e in blocks)

"""Lines -> rows: Arrow's bulk JSON reader for the lines it accepts, ``classify_line`` for the rest.

Both paths give a line the same outcome: the bulk reader is only a faster way to
reach the decision ``classify_line`` would take (tests/glue/test_lines.py holds
them to it).
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ndjson_pipeline.conversion import ConversionOptions, ReadMode
from ndjson_pipeline.dataset_schema import RESCUED_COLUMN

MiB = 1024 * 1024
# Reasons of lines that are not JSON objects at all (the others are objects the rules refuse).
NOT_AN_OBJECT = ("malformed JSON", "not a JSON object")
# In rescue mode, the earlier values of keys given more than once (the last one wins), by key.
DUPLICATE_KEYS = "_duplicate_keys"
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class LineRules:
    """How lines become rows: everything a task needs besides the files themselves."""

    schema: pa.Schema  # the declared fields, as Arrow reads them
    day: str
    options: ConversionOptions = field(default_factory=ConversionOptions)

    @property
    def read_mode(self) -> ReadMode:
        return self.options.read_mode

    @property
    def row_schema(self) -> pa.Schema:
        """The declared fields, then ``_rescued_data`` in rescue mode."""
        if self.read_mode == ReadMode.RESCUE:
            return self.schema.append(pa.field(RESCUED_COLUMN, pa.string()))
        return self.schema


def bulk_parse(lines: list[bytes], schema: pa.Schema) -> tuple[list[pa.Table], list[int], list[int]]:
    """Parse lines with Arrow's JSON reader: (tables, indices of their rows in order, indices it refused).

    The reader refuses a whole block at its first bad line and usually names that
    line's row: the rows before it are read again as one block and reading goes on
    after it, so a few bad lines cost about one more pass. Without a row number
    the block is halved until the bad lines are alone. Refused lines are not
    necessarily bad (``classify_line`` decides): the reader is stricter than the rules.
    One thing it is more lenient about: an integer literal too big for a double
    becomes infinity instead of an error (1e400 is an error), so rows holding an
    infinite double are refused here, and decided like 1e400.
    """
    tables: list[pa.Table] = []
    accepted: list[int] = []
    refused: list[int] = []
    check_doubles = any(_has_doubles(f.type) for f in schema)
    pending = _blocks(lines)
    while pending:
        lo, hi = pending.pop()
        if lo == hi:
            continue
        try:
            table = _read_json(lines[lo:hi], schema)
            if table.num_rows == hi - lo:
                overflowed = _rows_with_infinity(table) if check_doubles else []
                if overflowed:
                    dropped = set(overflowed)
                    keep = [i for i in range(hi - lo) if i not in dropped]
                    table = table.take(pa.array(keep, pa.int64()))
                    refused.extend(lo + i for i in overflowed)
                    accepted.extend(lo + i for i in keep)
                else:
                    accepted.extend(range(lo, hi))
                tables.append(table)
                continue
            bad_row = None  # a line held more than one JSON document
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            match = re.search(r"\bin row (\d+)\b", str(exc))
            bad_row = int(match.group(1)) if match else None
        if hi - lo <= 8:
            refused.extend(range(lo, hi))
        elif bad_row is not None and bad_row < hi - lo:
            # The rows before it read cleanly; the rest is halved, so a run of bad lines costs n log n, not n^2.
            refused.append(lo + bad_row)
            rest = lo + bad_row + 1
            middle = (rest + hi) // 2
            pending += [(middle, hi), (rest, middle), (lo, lo + bad_row)]
        else:
            middle = (lo + hi) // 2
            pending += [(middle, hi), (lo, middle)]
    return tables, accepted, refused


def _has_doubles(arrow: pa.DataType) -> bool:
    if pa.types.is_struct(arrow):
        return any(_has_doubles(f.type) for f in arrow)
    if pa.types.is_list(arrow):
        return _has_doubles(arrow.value_type)
    return bool(pa.types.is_floating(arrow))


def _rows_with_infinity(table: pa.Table) -> list[int]:
    """Indices of the rows holding an infinite double at any depth."""
    rows: set[int] = set()
    for column in table.columns:
        if not _has_doubles(column.type):
            continue
        start = 0
        for chunk in column.chunks:
            rows |= {start + index for index in _infinite_at(chunk)}
            start += len(chunk)
    return sorted(rows)


def _infinite_at(array: pa.Array) -> set[int]:
    if pa.types.is_floating(array.type):
        return set(pc.indices_nonzero(pc.fill_null(pc.is_inf(array), False)).to_pylist())
    if pa.types.is_struct(array.type):
        return set().union(*(_infinite_at(child) for child in array.flatten()))
    if pa.types.is_list(array.type):
        inner = _infinite_at(array.flatten())
        if not inner:
            return set()
        return set(pc.list_parent_indices(array).take(pa.array(sorted(inner), pa.int64())).to_pylist())
    return set()


def _blocks(lines: list[bytes], block_bytes: int = 64 * MiB) -> list[tuple[int, int]]:
    """(start, end) blocks of lines of about ``block_bytes``, last block first (``bulk_parse`` pops from the end)."""
    if sum(map(len, lines)) + len(lines) <= block_bytes:
        return [(0, len(lines))]
    blocks, start, size = [], 0, 0
    for index, line in enumerate(lines):
        if size and size + len(line) > block_bytes:
            blocks.append((start, index))
            start, size = index, 0
        size += len(line) + 1
    blocks.append((start, len(lines)))
    return blocks[::-1]


def _read_json(lines: list[bytes], schema: pa.Schema) -> pa.Table:
    data = b"\n".join(lines)
    table = pa_json.read_json(
        io.BytesIO(data),
        # One block for the whole input, and no threads of its own: Spark runs one task per core.
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    return table.select(schema.names)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def classify_line(text: str, rules: LineRules) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(row, rescued JSON, quarantine reason) of a line the bulk reader refused.

    A field keeps its value when the value fits the declared type; otherwise the
    value is nulled where it does not fit and the field's whole JSON value goes to
    ``_rescued_data`` (rescue) or the line is quarantined (strict). Unknown fields,
    at any depth, are treated the same way. A key given twice (at any depth) keeps
    its last value, as most JSON readers do, and its earlier values go to
    ``_rescued_data`` under ``_duplicate_keys`` (rescue) or the line is quarantined (strict).
    """
    duplicates: dict[str, list[Any]] = {}

    def last_value_wins(pairs: list[tuple[str, object]]) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for key, item in pairs:
            if key in value:
                duplicates.setdefault(key, []).append(value[key])
            value[key] = item
        return value

    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=last_value_wins)
    except (ValueError, RecursionError):
        control = _CONTROL_CHARACTER.search(text)
        return None, None, "malformed JSON" + (f": control character U+{ord(control[0]):04X}" if control else "")
    if isinstance(value, list):
        return None, None, "not a JSON object: array"
    if not isinstance(value, dict):
        return None, None, "not a JSON object: scalar or null"
    row, mismatched = {}, []
    for f in rules.schema:
        row[f.name], fits = conform(value.get(f.name), f.type)
        if not fits:
            mismatched.append(f.name)
    unknown = [k for k in value if k not in row]
    if rules.read_mode == ReadMode.STRICT:
        if duplicates:
            return None, None, "duplicate key: " + ", ".join(sorted(duplicates))
        if unknown:
            return None, None, "unknown fields: " + ", ".join(sorted(unknown))
        if mismatched:
            return None, None, "type mismatch: " + ", ".join(mismatched)
        return row, None, None
    rescued = {k: _raw_json(value[k]) for k in [*mismatched, *unknown]}
    if duplicates:
        rescued[DUPLICATE_KEYS] = json.dumps(duplicates, separators=(",", ":"))
    return row, (json.dumps(rescued) if rescued else None), None


def _raw_json(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def conform(value: object, arrow: pa.DataType) -> tuple[object, bool]:
    """``value`` as the declared type (parts that do not fit nulled, unknown keys dropped), and whether all fit."""
    if value is None:
        return None, True
    if pa.types.is_struct(arrow):
        if not isinstance(value, dict):
            return None, False
        out, fits = {}, set(value) <= {f.name for f in arrow}
        for f in arrow:
            out[f.name], ok = conform(value.get(f.name), f.type)
            fits &= ok
        return out, fits
    if pa.types.is_list(arrow):
        if not isinstance(value, list):
            return None, False
        items = [conform(item, arrow.value_type) for item in value]
        return [item for item, _ in items], all(ok for _, ok in items)
    if pa.types.is_string(arrow):
        fits = isinstance(value, str) and _is_utf8_str(value)
    elif pa.types.is_boolean(arrow):
        fits = isinstance(value, bool)
    elif pa.types.is_integer(arrow):
        limit = 2 ** (arrow.bit_width - 1)
        fits = isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit
    else:  # floating point
        value = _as_double(value)
        fits = value is not None
    return (value if fits else None), fits


def _as_double(value: object) -> float | None:
    """A JSON number as a finite double; None for anything else, 1e400 and a 400-digit integer alike."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _is_utf8_str(value: str) -> bool:
    # json.loads accepts lone surrogate escapes ("\ud800"), which no UTF-8 text can hold.
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False

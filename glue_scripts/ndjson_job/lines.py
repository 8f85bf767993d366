"""The rules a line is decided by (``classify_line``): a row, a row with rescued values, or a quarantine reason.

Arrow's bulk reader (``bulk``) is only a faster way to reach the decision
``classify_line`` would take for the lines it reads (tests/glue/test_lines.py
holds them to it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

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
    threads: int = 1  # Arrow reads on this many threads: the task's share of its executor's cores

    @property
    def read_mode(self) -> ReadMode:
        return self.options.read_mode

    @property
    def row_schema(self) -> pa.Schema:
        """The declared fields, then ``_rescued_data`` in rescue mode."""
        if self.read_mode == ReadMode.RESCUE:
            return self.schema.append(pa.field(RESCUED_COLUMN, pa.string()))
        return self.schema


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

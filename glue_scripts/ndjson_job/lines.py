"""The rules a line is decided by (``classify_line``): a row, a row with rescued values, or a quarantine reason.

Arrow's bulk reader (``bulk``) is only a faster way to reach the decision
``classify_line`` would take for the lines it reads (tests/glue/test_lines.py
holds them to it).
"""

from __future__ import annotations

import decimal
import functools
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ndjson_pipeline.conversion import ConversionOptions, ReadMode
from ndjson_pipeline.dataset_schema import EPOCH_UNITS, RESCUED_COLUMN, TIMESTAMP_FORMAT, iso_date, iso_timestamp

MiB = 1024 * 1024
# Reasons of lines that are not JSON objects at all (the others are objects the rules refuse).
NOT_AN_OBJECT = ("malformed JSON", "not a JSON object")
# In rescue mode, the earlier values of keys given more than once (the last one wins), by key.
DUPLICATE_KEYS = "_duplicate_keys"
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# A number written as a JSON string, as Arrow's decimal parser reads it (ASCII digits only).
NUMERIC_STRING = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_NUMERIC_STRING = re.compile(NUMERIC_STRING)
# The timestamps every reader can hold (Python's datetime range), in microseconds since the epoch.
MIN_MICROS, MAX_MICROS = -62135596800 * 10**6, 253402300800 * 10**6 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Exact decimal arithmetic: no rounding at the default context's 28 digits.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


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

    @functools.cached_property
    def conformers(self) -> list[tuple[str, Conformer]]:
        """Each declared field's name and ``conform`` for it, built once per task."""
        return [(f.name, conformer(f.type, time_format_of(f))) for f in self.schema]

    @property
    def row_schema(self) -> pa.Schema:
        """The declared fields, then ``_rescued_data`` in rescue mode."""
        if self.read_mode == ReadMode.RESCUE:
            return self.schema.append(pa.field(RESCUED_COLUMN, pa.string()))
        return self.schema


class _NegativeZero(int):
    """JSON's ``-0``: zero as an integer, -0.0 as a double, as Arrow reads it."""

    def __float__(self) -> float:
        return -0.0


def _json_int(text: str) -> int:
    return _NegativeZero(0) if text == "-0" else int(text)


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
        # Numbers with a fraction or exponent as Decimal: a decimal field keeps exactly what the line wrote.
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_int=_json_int,
            parse_constant=_reject_constant,
            object_pairs_hook=last_value_wins,
        )
    except (ValueError, RecursionError):
        control = _CONTROL_CHARACTER.search(text)
        return None, None, "malformed JSON" + (f": control character U+{ord(control[0]):04X}" if control else "")
    if isinstance(value, list):
        return None, None, "not a JSON object: array"
    if not isinstance(value, dict):
        return None, None, "not a JSON object: scalar or null"
    row, mismatched = {}, []
    for name, conform_field in rules.conformers:
        row[name], fits = conform_field(value.get(name))
        if not fits:
            mismatched.append(name)
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
        rescued[DUPLICATE_KEYS] = to_json(duplicates)
    return row, (json.dumps(rescued) if rescued else None), None


def _raw_json(value: object) -> str:
    return value if isinstance(value, str) else to_json(value)


def to_json(value: object) -> str:
    """Compact JSON of a parsed value; a Decimal keeps the digits the line wrote (``1.10`` stays ``1.10``)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return json.dumps(value)


def time_format_of(declared: pa.Field) -> str | None:
    """The epoch unit a field's metadata gives its timestamps (``epoch_seconds``...), None for ISO-8601 text."""
    metadata = declared.metadata or {}
    unit = metadata.get(TIMESTAMP_FORMAT.encode())
    return unit.decode() if unit is not None else None


Conformer = Callable[[object], tuple[object, bool]]


def conform(value: object, arrow: pa.DataType, time_format: str | None = None) -> tuple[object, bool]:
    """``value`` as the declared type (parts that do not fit nulled, unknown keys dropped), and whether all fit.

    ``time_format`` is the field's epoch unit (``time_format_of``) for the timestamps in it, None for ISO-8601.
    """
    return conformer(arrow, time_format)(value)


def conformer(arrow: pa.DataType, time_format: str | None = None) -> Conformer:
    """``conform`` for one declared type, its type tests made once: the rules apply it to every line."""
    if pa.types.is_struct(arrow):
        return _struct_conformer([(f.name, conformer(f.type, time_format_of(f))) for f in arrow])
    if pa.types.is_list(arrow):
        return _list_conformer(conformer(arrow.value_type, time_format))
    if pa.types.is_map(arrow):
        return _map_conformer(conformer(arrow.item_type, time_format))
    convert: Callable[[object], object]
    if pa.types.is_string(arrow):
        convert = _as_string
    elif pa.types.is_boolean(arrow):
        convert = _as_boolean
    elif pa.types.is_integer(arrow):
        convert = functools.partial(_as_integer, limit=2 ** (arrow.bit_width - 1))
    elif pa.types.is_decimal(arrow):
        convert = functools.partial(_as_decimal, precision=arrow.precision, scale=arrow.scale)
    elif pa.types.is_timestamp(arrow):
        convert = functools.partial(_as_timestamp, time_format=time_format)
    elif pa.types.is_date(arrow):
        convert = _as_date
    elif pa.types.is_float32(arrow):
        convert = _as_float32
    else:  # double
        convert = _as_double

    def conform_value(value: object) -> tuple[object, bool]:
        if value is None:
            return None, True
        converted = convert(value)
        return converted, converted is not None

    return conform_value


def _struct_conformer(members: list[tuple[str, Conformer]]) -> Conformer:
    names = frozenset(name for name, _ in members)

    def conform_struct(value: object) -> tuple[object, bool]:
        if value is None:
            return None, True
        if not isinstance(value, dict):
            return None, False
        out, fits = {}, value.keys() <= names
        for name, conform_member in members:
            out[name], ok = conform_member(value.get(name))
            fits &= ok
        return out, fits

    return conform_struct


def _list_conformer(conform_item: Conformer) -> Conformer:
    def conform_list(value: object) -> tuple[object, bool]:
        if value is None:
            return None, True
        if not isinstance(value, list):
            return None, False
        items = [conform_item(item) for item in value]
        return [item for item, _ in items], all(ok for _, ok in items)

    return conform_list


def _map_conformer(conform_item: Conformer) -> Conformer:
    def conform_map(value: object) -> tuple[object, bool]:
        if value is None:
            return None, True
        if not isinstance(value, dict) or not all(_is_utf8_str(key) for key in value):
            return None, False
        entries = [(key, conform_item(item)) for key, item in value.items()]
        return [(key, item) for key, (item, _) in entries], all(ok for _, (_, ok) in entries)

    return conform_map


def _as_string(value: object) -> str | None:
    return value if isinstance(value, str) and _is_utf8_str(value) else None


def _as_boolean(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_integer(value: object, limit: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit:
        return value
    return None


def _as_double(value: object) -> float | None:
    """A JSON number as a finite double; None for anything else, 1e400 and a 400-digit integer alike."""
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _as_float32(value: object) -> float | None:
    """A JSON number float32 can hold (rounded to it as any float is); None beyond its range, never infinity."""
    number = _as_double(value)
    if number is None:
        return None
    try:
        struct.pack("<f", number)  # refuses a value that would round to infinity
    except OverflowError:
        return None
    return number


def _exact_number(value: object) -> Decimal | None:
    """A JSON number or numeric string (``NUMERIC_STRING``) as an exact Decimal; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and _NUMERIC_STRING.match(value):
        return Decimal(value)
    return None


def _as_decimal(value: object, precision: int, scale: int) -> Decimal | None:
    """The value at ``scale`` when it fits ``decimal(precision, scale)`` exactly; never rounded."""
    number = _exact_number(value)
    # Compared before quantizing: 1e999999999 must not be expanded digit by digit.
    if number is None or number.copy_abs() >= Decimal(f"1e{precision - scale}"):
        return None
    scaled = number.quantize(Decimal(1).scaleb(-scale), context=_EXACT)
    return scaled if scaled == number else None


def _as_timestamp(value: object, time_format: str | None) -> datetime | None:
    """A timestamp in UTC: from ISO-8601 text (no offset: UTC), or from an epoch number when the field says so."""
    if time_format in EPOCH_UNITS:
        number = _exact_number(value)
        if number is None:
            return None
        micros = number.scaleb(EPOCH_UNITS[time_format], context=_EXACT)
        if not MIN_MICROS <= micros <= MAX_MICROS or micros != micros.to_integral_value(context=_EXACT):
            return None
        return _EPOCH + timedelta(microseconds=int(micros))
    return iso_timestamp(value) if isinstance(value, str) else None


def _as_date(value: object) -> date | None:
    return iso_date(value) if isinstance(value, str) else None


def _is_utf8_str(value: str) -> bool:
    # json.loads accepts lone surrogate escapes ("\ud800"), which no UTF-8 text can hold.
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False

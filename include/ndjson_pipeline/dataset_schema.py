"""The dataset's declared schema: its versions, the columns the job writes, and which changes readers survive.

A schema file is Spark's ``StructType.jsonValue()`` JSON plus a ``version``
number (Spark ignores the extra key)::

    glue_scripts/schemas/<dataset>.json                  the current version, N
    glue_scripts/schemas/history/<dataset>/<n>.json      every earlier version, 1 .. N-1

Each version must be a compatible evolution of the one before: fields (at any
depth) may be added; a field may not be removed, renamed or change its type,
because files already written would then be unreadable or silently wrong. A
version that breaks this on purpose carries a ``breaking`` text saying why and
what readers must do; then it is accepted. Only JSON and the standard library
here: the Glue job, the build and the Airflow side all use it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

RESCUED_COLUMN = "_rescued_data"
LINEAGE_COLUMNS = ("_source_uri", "_manifest_id")
# The field metadata key that says a timestamp field holds epoch numbers, and its values: the power of ten from
# the unit to microseconds (docs/schema-evolution.md, Types). Without it a timestamp field holds ISO-8601 text.
TIMESTAMP_FORMAT = "timestamp_format"
EPOCH_UNITS = {"epoch_seconds": 6, "epoch_millis": 3}
# ISO-8601 text the job reads as a timestamp: a date, T or a space, hh:mm[:ss[.ffffff]], then Z, +hh:mm, +hhmm or
# nothing (UTC); and as a date: YYYY-MM-DD. ASCII digits only.
ISO_TIMESTAMP = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
ISO_DATE = r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$"
_ISO_TIMESTAMP, _ISO_DATE = re.compile(ISO_TIMESTAMP), re.compile(ISO_DATE)


class SchemaError(ValueError):
    """A schema file is malformed, or a version breaks readers; the message names the file and field."""


@dataclass(frozen=True)
class DeclaredSchema:
    """One version of a dataset's declared schema."""

    version: int
    fields: tuple[dict[str, Any], ...]
    breaking: str | None = None

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> DeclaredSchema:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("type") != "struct" or not isinstance(doc.get("fields"), list):
            raise SchemaError(f"{source} is not a Spark StructType JSON document")
        version = doc.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"{source}: 'version' must be a positive integer, not {version!r}")
        breaking = doc.get("breaking")
        if breaking is not None and (not isinstance(breaking, str) or not breaking.strip()):
            raise SchemaError(f"{source}: 'breaking' must say why the change breaks readers and what to do")
        return cls(version=version, fields=tuple(doc["fields"]), breaking=breaking)

    def struct_json(self) -> dict[str, Any]:
        """The declared fields as Spark's StructType JSON."""
        return {"type": "struct", "fields": list(self.fields)}


def output_fields(declared: Sequence[dict[str, Any]], *, rescue: bool, lineage: bool) -> list[dict[str, Any]]:
    """Every column the job writes, in order, as StructField JSON (the partition column ``dt`` is not one).

    The declared fields, all nullable (a line may lack any of them), then
    ``_rescued_data`` in rescue mode, then the lineage columns.
    """
    fields = [{**f, "nullable": True} for f in declared]
    if rescue:
        fields.append(_string_field(RESCUED_COLUMN, nullable=True))
    if lineage:
        fields += [_string_field(name, nullable=name != "_source_uri") for name in LINEAGE_COLUMNS]
    return fields


def evolution_problems(old: list[dict[str, Any]] | tuple[dict[str, Any], ...], new: list[dict[str, Any]]) -> list[str]:
    """Why readers of data written with ``old`` fields would break under ``new`` ones (empty: compatible)."""
    return list(_struct_problems(old, new, ""))


def _struct_problems(old: Any, new: Any, path: str) -> Iterator[str]:
    new_by_name = {f["name"]: f for f in new}
    for field in old:
        name = f"{path}{field['name']}"
        if field["name"] not in new_by_name:
            yield f"field {name!r} was removed (or renamed)"
            continue
        yield from _type_problems(field["type"], new_by_name[field["name"]]["type"], name)


def _type_problems(old: Any, new: Any, name: str) -> Iterator[str]:
    if type_kind(old) != type_kind(new):
        yield f"field {name!r} changed type from {type_kind(old)} to {type_kind(new)}"
    elif type_kind(old) == "struct":
        yield from _struct_problems(old["fields"], new["fields"], f"{name}.")
    elif type_kind(old) == "array":
        yield from _type_problems(old["elementType"], new["elementType"], f"{name}[]")
    elif type_kind(old) == "map":
        yield from _type_problems(old["valueType"], new["valueType"], f"{name}{{}}")


def field_name_problems(fields: list[dict[str, Any]] | tuple[dict[str, Any], ...], path: str = "") -> list[str]:
    """Names no table can hold (empty, or equal to another's but for case, at any depth; empty: none).

    The Glue Data Catalog and Athena fold column and struct member names to lower case, so ``User`` and
    ``user`` in one struct would be one column to them.
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    for f in fields:
        name = f.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"a field in {path.rstrip('.') or 'the top level'} has no name")
            continue
        if name.lower() in seen:
            problems.append(f"fields {path + seen[name.lower()]!r} and {path + name!r} differ only in case")
        seen.setdefault(name.lower(), name)
        problems += _type_name_problems(f.get("type"), f"{path}{name}")
    return problems


def _type_name_problems(spark_type: Any, path: str) -> list[str]:
    if type_kind(spark_type) == "struct":
        return field_name_problems(spark_type["fields"], f"{path}.")
    if type_kind(spark_type) == "array":
        return _type_name_problems(spark_type["elementType"], f"{path}[]")
    if type_kind(spark_type) == "map":
        return _type_name_problems(spark_type["valueType"], f"{path}{{}}")
    return []


def type_kind(spark_type: Any) -> str:
    """``string``, ``decimal(12,2)``, ... for a simple type; ``struct``, ``array`` or ``map`` for a complex one.

    A decimal's precision and scale are part of its kind: Parquet stores ``decimal(9,2)`` and
    ``decimal(12,2)`` differently, and a reader given one table type for both fails on some files.
    """
    return spark_type if isinstance(spark_type, str) else str(spark_type.get("type"))


def iso_timestamp(text: str) -> datetime | None:
    """The UTC moment ISO-8601 text (``ISO_TIMESTAMP``) names; None when it is not one, or not a real moment."""
    match = _ISO_TIMESTAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        zone = UTC
        if offset not in (None, "Z"):
            digits = offset[1:].replace(":", "")
            if int(digits[2:]) >= 60:
                return None
            shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            zone = timezone(-shift if offset[0] == "-" else shift)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "").ljust(6, "0")),
            tzinfo=zone,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # no such day or hour, an offset of a day or more, beyond year 1..9999
        return None


def iso_date(text: str) -> date | None:
    """The date ``YYYY-MM-DD`` text names; None when it is not one, or no such day."""
    match = _ISO_DATE.match(text)
    if match is None:
        return None
    try:
        return date(*map(int, match.groups()))
    except ValueError:
        return None


def _string_field(name: str, *, nullable: bool) -> dict[str, Any]:
    return {"name": name, "type": "string", "nullable": nullable, "metadata": {}}


class SchemaRegistry:
    """The versions of one dataset's schema in a schemas folder, checked as a chain of evolutions.

    :param folder: the schemas folder (``glue_scripts/schemas``).
    :param dataset: the dataset name (``events``).
    """

    def __init__(self, folder: Path, dataset: str) -> None:
        self.current_path = folder / f"{dataset}.json"
        self.history_folder = folder / "history" / dataset

    def current(self) -> DeclaredSchema:
        if not self.current_path.is_file():
            raise SchemaError(f"{self.current_path} not found")
        return DeclaredSchema.from_json(self.current_path.read_text(), str(self.current_path))

    def versions(self) -> list[DeclaredSchema]:
        """Every version, oldest first; each file's version must match its place in the chain."""
        current = self.current()
        chain = []
        for number in range(1, current.version):
            path = self.history_folder / f"{number}.json"
            if not path.is_file():
                raise SchemaError(f"{self.current_path} is version {current.version} but {path} is missing")
            chain.append(DeclaredSchema.from_json(path.read_text(), str(path)))
            if chain[-1].version != number:
                raise SchemaError(f"{path} declares version {chain[-1].version}, not {number}")
        return [*chain, current]

    def check(self) -> DeclaredSchema:
        """The current version, once every step of the chain is shown compatible or declared breaking."""
        chain = self.versions()
        for before, after in itertools.pairwise(chain):
            problems = evolution_problems(before.fields, list(after.fields))
            if problems and not after.breaking:
                raise SchemaError(
                    f"schema version {after.version} of {self.current_path.stem} breaks readers of version "
                    f'{before.version}: {"; ".join(problems)}. Add fields instead, or set "breaking" in the '
                    "new version to say why and what readers must do (see docs/schema-evolution.md)"
                )
        return chain[-1]

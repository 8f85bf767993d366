"""What JSON values looked like, place by place, and the declared type that would read them.

``Observed`` counts the values seen at one place of a document (a field, an array's
items) by kind, and for objects and arrays what they held. It is filled from
sample lines by ``tools.schema propose`` and from ``_rescued_data`` by the job's
drift count (``ndjson_job.drift``); two of them merge, so counts of many files,
tasks or manifests add up. ``proposed_type`` turns one into a declared type in
Spark's StructType JSON spelling, with the conflicts it had to resolve:

- integers are ``long``; integers mixed with decimals ``double``;
- strings that are all ISO-8601 date-times are ``timestamp``, all ``YYYY-MM-DD``
  ``date``; mixed with each other or other strings, ``string``;
- objects are structs (members in the order first seen; a member missing or null
  in some objects is nullable), or ``map<string,T>`` when they held more than
  ``MAP_KEYS`` distinct keys (ids as keys);
- values of kinds no one type reads (a string here, an object there) take the
  kind most values had; the others would be rescued or quarantined, and the
  conflict says so with the counts.

Only the standard library: the Glue job, the tools and the Airflow side use it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ndjson_pipeline.dataset_schema import iso_date, iso_timestamp

# An object with more distinct keys than this is proposed as a map: its keys are data, not field names.
MAP_KEYS = 100
# Keys tracked one by one per object place; further keys are counted together (enough to propose a map).
MAX_TRACKED_KEYS = 1000
INT64 = 2**63
# Kinds a single declared type reads together (the job's double field takes integers too).
_FAMILIES = {
    "long": "number",
    "double": "number",
    "string": "text",
    "timestamp": "text",
    "date": "text",
    "boolean": "boolean",
    "struct": "struct",
    "array": "array",
}


def kind_of(value: object) -> str:
    """The kind of a JSON value: null, boolean, long, double, string, timestamp, date, struct or array."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long" if -INT64 <= value < INT64 else "double"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return _text_kind(value)
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, list):
        return "array"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _text_kind(value: str) -> str:
    # The job's own reading of timestamps and dates: a proposal never declares a type its values would not fit.
    if iso_timestamp(value) is not None:
        return "timestamp"
    if iso_date(value) is not None:
        return "date"
    return "string"


@dataclass
class Observed:
    """The values seen at one place: how many of each kind, and what the objects and arrays among them held.

    ``fields`` are the objects' members by key, first seen first; past ``MAX_TRACKED_KEYS`` keys, the values of
    further keys go to ``other_fields`` together. ``elements`` are the arrays' items.
    """

    kinds: Counter[str] = field(default_factory=Counter)
    fields: dict[str, Observed] = field(default_factory=dict)
    other_fields: Observed | None = None
    elements: Observed | None = None

    def add(self, value: object) -> None:
        kind = kind_of(value)
        self.kinds[kind] += 1
        if isinstance(value, dict):
            for key, item in value.items():
                self._member(key).add(item)
        elif isinstance(value, list):
            if self.elements is None:
                self.elements = Observed()
            for item in value:
                self.elements.add(item)

    def _member(self, key: str) -> Observed:
        member = self.fields.get(key)
        if member is None:
            if len(self.fields) < MAX_TRACKED_KEYS:
                member = self.fields[key] = Observed()
            else:
                member = self.other_fields = self.other_fields or Observed()
        return member

    def merge(self, other: Observed) -> Observed:
        """Add ``other``'s counts to these; returns self."""
        self.kinds.update(other.kinds)
        for key, member in other.fields.items():
            self._member(key).merge(member)
        if other.other_fields is not None:
            self.other_fields = (self.other_fields or Observed()).merge(other.other_fields)
        if other.elements is not None:
            self.elements = (self.elements or Observed()).merge(other.elements)
        return self

    @property
    def count(self) -> int:
        return sum(self.kinds.values())

    @property
    def present(self) -> int:
        """Values that were not null."""
        return self.count - self.kinds["null"]

    @property
    def distinct_keys(self) -> int:
        return len(self.fields) + (1 if self.other_fields is not None else 0)

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form (``from_json`` reads it back)."""
        doc: dict[str, Any] = {"kinds": dict(sorted(self.kinds.items()))}
        if self.fields:
            doc["fields"] = {key: member.to_json() for key, member in self.fields.items()}
        if self.other_fields is not None:
            doc["other_fields"] = self.other_fields.to_json()
        if self.elements is not None:
            doc["elements"] = self.elements.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Observed:
        return cls(
            kinds=Counter({str(k): int(v) for k, v in doc.get("kinds", {}).items()}),
            fields={str(k): cls.from_json(v) for k, v in doc.get("fields", {}).items()},
            other_fields=cls.from_json(doc["other_fields"]) if "other_fields" in doc else None,
            elements=cls.from_json(doc["elements"]) if "elements" in doc else None,
        )


@dataclass(frozen=True)
class Conflict:
    """Values at ``path`` that one declared type cannot all read, or could not be typed at all."""

    path: str
    counts: dict[str, int]  # values by kind (nulls left out)
    resolution: str  # the proposed type, in Spark's simple form
    note: str


def proposed_type(observed: Observed, path: str = "") -> tuple[Any, list[Conflict]]:
    """The declared type (Spark JSON spelling) that reads the values ``observed`` saw, and the conflicts met.

    ``path`` names the place in conflicts (dotted; ``[]`` for an array's items).
    """
    conflicts: list[Conflict] = []
    return _proposed(observed, path, conflicts), conflicts


def proposed_fields(observed: Observed, path: str = "") -> tuple[list[dict[str, Any]], list[Conflict]]:
    """The StructField JSON of the members of the objects ``observed`` saw (the lines, at the top)."""
    conflicts: list[Conflict] = []
    return _struct_fields(observed, path, conflicts), conflicts


def _proposed(observed: Observed, path: str, conflicts: list[Conflict]) -> Any:
    counts = {kind: n for kind, n in sorted(observed.kinds.items()) if kind != "null"}
    families = Counter[str]()
    for kind, n in counts.items():
        families[_FAMILIES[kind]] += n
    if not families:
        conflicts.append(Conflict(path, counts, "string", "only nulls seen: the type is a guess, review it"))
        return "string"
    # The family most values had (ties: the order of _FAMILIES); the others cannot be read by its type.
    order = list(dict.fromkeys(_FAMILIES.values()))
    family = max(families, key=lambda f: (families[f], -order.index(f)))
    proposed = _family_type(observed, family, path, conflicts)
    if len(families) > 1:
        conflicts.append(
            Conflict(
                path,
                counts,
                type_string(proposed),
                f"{sum(families.values()) - families[family]} value(s) of other kinds would go to _rescued_data "
                "(read mode rescue) or quarantine their line (strict)",
            )
        )
    elif family == "text" and len(counts) > 1:
        conflicts.append(Conflict(path, counts, "string", "not every value is a timestamp or a date: kept as string"))
    return proposed


def _family_type(observed: Observed, family: str, path: str, conflicts: list[Conflict]) -> Any:
    kinds = {kind for kind in observed.kinds if _FAMILIES.get(kind) == family}
    if family == "number":
        return "double" if "double" in kinds else "long"
    if family == "text":
        return kinds.pop() if len(kinds) == 1 else "string"
    if family == "boolean":
        return "boolean"
    if family == "array":
        elements = observed.elements or Observed()
        element_path = f"{path}[]"
        if not elements.count:
            conflicts.append(Conflict(element_path, {}, "string", "only empty arrays seen: the item type is a guess"))
            return {"type": "array", "elementType": "string", "containsNull": True}
        return {
            "type": "array",
            "elementType": _proposed(elements, element_path, conflicts),
            "containsNull": elements.kinds["null"] > 0,
        }
    if observed.distinct_keys > MAP_KEYS:
        values = Observed()
        for member in [*observed.fields.values(), *([observed.other_fields] if observed.other_fields else [])]:
            values.merge(member)
        value_path = f"{path}{{}}"
        conflicts.append(
            Conflict(path, {}, "map", f"{observed.distinct_keys} distinct keys: proposed as a map, review it")
        )
        return {
            "type": "map",
            "keyType": "string",
            "valueType": _proposed(values, value_path, conflicts),
            "valueContainsNull": True,
        }
    return {"type": "struct", "fields": _struct_fields(observed, path, conflicts)}


def _struct_fields(observed: Observed, path: str, conflicts: list[Conflict]) -> list[dict[str, Any]]:
    objects = observed.kinds["struct"]
    prefix = f"{path}." if path else ""
    return [
        {
            "name": key,
            "type": _proposed(member, f"{prefix}{key}", conflicts),
            # A member some objects lacked, or held as null, is nullable.
            "nullable": member.present < objects,
            "metadata": {},
        }
        for key, member in observed.fields.items()
    ]


def type_string(spark_type: Any) -> str:
    """A declared type in Spark's simple form: ``long``, ``array<string>``, ``struct<a:long>``, ``map<string,long>``."""
    if isinstance(spark_type, str):
        return spark_type
    kind = spark_type.get("type")
    if kind == "array":
        return f"array<{type_string(spark_type['elementType'])}>"
    if kind == "map":
        return f"map<{type_string(spark_type['keyType'])},{type_string(spark_type['valueType'])}>"
    if kind == "struct":
        return "struct<" + ",".join(f"{f['name']}:{type_string(f['type'])}" for f in spark_type["fields"]) + ">"
    return str(kind)


def field_paths(fields: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> Iterator[str]:
    """Every declared path: ``user``, ``user.id``, ``items``, ``items[]`` (its items), ``items[].sku``; ``{}``
    names a map's values."""
    return (path for path, _ in field_types(fields))


def field_types(
    fields: list[dict[str, Any]] | tuple[dict[str, Any], ...], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    """Every declared path with its declared type, parents first."""
    for f in fields:
        path = f"{prefix}{f['name']}"
        yield path, f["type"]
        yield from _type_paths(f["type"], path)


def _type_paths(spark_type: Any, path: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(spark_type, dict):
        return
    if spark_type.get("type") == "struct":
        yield from field_types(spark_type["fields"], f"{path}.")
        return
    inner = {"array": ("elementType", "[]"), "map": ("valueType", "{}")}.get(str(spark_type.get("type")))
    if inner is not None:
        key, suffix = inner
        yield f"{path}{suffix}", spark_type[key]
        yield from _type_paths(spark_type[key], f"{path}{suffix}")

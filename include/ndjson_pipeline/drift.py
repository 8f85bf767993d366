"""Drift: fields the data carries that the declared schema does not read, as counted in ``_rescued_data``.

In ``rescue`` mode the job keeps, per row, each top-level field whose value did
not fit the declared schema, or that the schema does not declare, in
``_rescued_data``. The job counts them per manifest (``ndjson_job.drift``) and
records a ``Drift`` in its result: for each field path found (``user.plan``,
``items[].discount``), the rows that held it, whether the schema declares that
path (then its values had another type) and what the values looked like
(``schema_inference.Observed``). The day report adds the manifests' drifts up
(``read_day_drift``) and proposes the compatible next schema version
(``next_version``): the current one with the new fields added where their paths
say. A result written before drift was counted has none: unknown, not zero.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ndjson_pipeline.dataset_schema import DeclaredSchema, evolution_problems
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.schema_inference import Conflict, Observed, field_paths, field_types, proposed_type, type_string

# Paths a result keeps (those of most rows): data whose keys are ids would otherwise grow a result without bound.
MAX_PATHS = 100


@dataclass
class RescuedPath:
    """One field path found in rescued values: the rows that held it and the values seen there."""

    rows: int = 0
    declared: bool = False  # the schema declares this path: its values did not fit the declared type
    values: Observed = field(default_factory=Observed)

    def merge(self, other: RescuedPath) -> None:
        self.rows += other.rows
        self.declared |= other.declared
        self.values.merge(other.values)


@dataclass
class Drift:
    """Rescued field paths and their counts; ``omitted`` counts further paths left out to keep a result small."""

    paths: dict[str, RescuedPath] = field(default_factory=dict)
    omitted: int = 0

    def count_row(self, found: dict[str, tuple[bool, list[object]]]) -> None:
        """Count one row: each path it held, whether the schema declares it, and its values there."""
        for path, (declared, values) in found.items():
            rescued = self.paths.setdefault(path, RescuedPath(declared=declared))
            rescued.rows += 1
            for value in values:
                rescued.values.add(value)

    def merge(self, other: Drift) -> Drift:
        for path, rescued in other.paths.items():
            self.paths.setdefault(path, RescuedPath()).merge(rescued)
        self.omitted += other.omitted
        return self

    def limited(self, max_paths: int = MAX_PATHS) -> Drift:
        """The ``max_paths`` paths of most rows; the others counted in ``omitted``."""
        kept = sorted(self.paths.items(), key=lambda item: (-item[1].rows, item[0]))
        return Drift(dict(kept[:max_paths]), self.omitted + max(0, len(kept) - max_paths))

    def to_json(self) -> dict[str, Any]:
        paths = {
            path: {"rows": p.rows, "declared": p.declared, "values": p.values.to_json()}
            for path, p in sorted(self.paths.items())
        }
        return {"paths": paths, "omitted": self.omitted}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Drift:
        paths = {
            str(path): RescuedPath(int(p["rows"]), bool(p["declared"]), Observed.from_json(p["values"]))
            for path, p in doc.get("paths", {}).items()
        }
        return cls(paths, int(doc.get("omitted", 0)))


class ResultStore(Protocol):
    def list(self, prefix: str) -> dict[str, int]: ...
    def read_bytes(self, uri: str) -> bytes: ...


@dataclass(frozen=True)
class DayDrift:
    drift: Drift
    manifests: int  # results read
    unknown: int  # results without drift counts (written before the job counted them)


def read_day_drift(store: ResultStore, layout: LakeLayout, day: str, *, threads: int = 8) -> DayDrift:
    """The drift of every manifest result of the day, added up (one listing, one read per result)."""
    uris = sorted(store.list(layout.results_prefix(day)))
    total, unknown = Drift(), 0
    with ThreadPoolExecutor(threads) as pool:
        for body in pool.map(store.read_bytes, uris):
            recorded = json.loads(body).get("drift")
            if recorded is None:
                unknown += 1
            else:
                total.merge(Drift.from_json(recorded))
    return DayDrift(total, len(uris), unknown)


@dataclass(frozen=True)
class NextVersion:
    """The current schema with the drift's new fields added; what it could not take in, and why."""

    document: dict[str, Any] | None  # the schema file of the next version; None when nothing is new
    added: list[str]
    not_placed: list[str]  # new paths under a parent the schema does not declare as a struct
    conflicts: list[Conflict]


def next_version(current: DeclaredSchema, paths: Iterable[tuple[str, RescuedPath]]) -> NextVersion:
    """The compatible next version of ``current`` that declares the new ``paths``, each as its values suggest.

    Only paths ``current`` does not declare are added (with nullable types); a declared path whose values did
    not fit cannot be taken in without changing its type, which breaks readers. The result is checked to be a
    compatible evolution of ``current``.
    """
    fields = copy.deepcopy(list(current.fields))
    declared = set(field_paths(fields))
    added, not_placed, conflicts = [], [], []
    for path, rescued in paths:
        if path in declared:
            continue
        parent_path, _, name = path.rpartition(".")
        parent = _struct_fields_at(fields, parent_path)
        if parent is None or "[" in name or not name:
            not_placed.append(path)
            continue
        spark_type, found = proposed_type(rescued.values, path)
        parent.append({"name": name, "type": spark_type, "nullable": True, "metadata": {}})
        declared.add(path)
        added.append(path)
        conflicts += found
    if not added:
        return NextVersion(None, [], not_placed, conflicts)
    problems = evolution_problems(current.fields, fields)
    if problems:  # additions never break readers: this would be a bug here, not in the data
        raise AssertionError(f"next version of the schema would break readers: {problems}")
    document = {"type": "struct", "version": current.version + 1, "fields": fields}
    return NextVersion(document, added, not_placed, conflicts)


def _struct_fields_at(fields: list[dict[str, Any]], parent_path: str) -> list[dict[str, Any]] | None:
    """The field list of the struct at ``parent_path`` (``""``: the top level; ``items[]``: an array's items)."""
    if not parent_path:
        return fields
    current: Any = {"type": "struct", "fields": fields}
    for segment in parent_path.split("."):
        name, arrays = segment.rstrip("[]"), (len(segment) - len(segment.rstrip("[]"))) // 2
        if not isinstance(current, dict) or current.get("type") != "struct":
            return None
        found = next((f for f in current["fields"] if f["name"] == name), None)
        if found is None:
            return None
        current = found["type"]
        for _ in range(arrays):
            if not isinstance(current, dict) or current.get("type") != "array":
                return None
            current = current["elementType"]
    if not isinstance(current, dict) or current.get("type") != "struct":
        return None
    fields_at: list[dict[str, Any]] = current["fields"]
    return fields_at


def drift_section(
    day_drift: DayDrift, current: DeclaredSchema | None, rows_out: int, rows_rescued: int, alert_percent: float
) -> dict[str, Any]:
    """The day report's ``drift``: the share of rows rescued, the paths found and the next schema version.

    ``current`` is the dataset's current schema (needed only when paths were found). Paths are listed by rows:
    ``new_fields`` (the next version adds them), ``mismatched`` (declared, values of another type: a compatible
    version cannot take them in) and ``declared_now`` (new when converted, declared by ``current`` since: a
    reprocess of the day moves them into their columns).
    """
    percent = None if rows_out == 0 else round(100 * rows_rescued / rows_out, 3)
    section: dict[str, Any] = {
        "manifests": day_drift.manifests,
        "manifests_unknown": day_drift.unknown,
        "rows_rescued_percent": percent,
        "alert_percent": alert_percent,
        "alert": percent is not None and percent > alert_percent,
        "new_fields": [],
        "mismatched": [],
        "declared_now": [],
        "omitted_paths": day_drift.drift.omitted,
        "next_schema": None,
    }
    if not day_drift.drift.paths:
        return section
    if current is None:
        raise ValueError("drift paths were found: the current schema is needed to place them")
    declared = dict(field_types(current.fields))
    by_rows = sorted(day_drift.drift.paths.items(), key=lambda item: (-item[1].rows, item[0]))
    new = []
    for path, rescued in by_rows:
        entry = {"path": path, "rows": rescued.rows, "type": type_string(proposed_type(rescued.values, path)[0])}
        if rescued.declared:
            section["mismatched"].append(
                {**entry, "declared": type_string(declared[path]) if path in declared else None}
            )
        elif path in declared:
            section["declared_now"].append({**entry, "declared": type_string(declared[path])})
        else:
            section["new_fields"].append(entry)
            new.append((path, rescued))
    proposal = next_version(current, new)
    section["next_schema"] = proposal.document
    section["not_placed"] = proposal.not_placed
    section["next_schema_conflicts"] = [asdict(c) for c in proposal.conflicts]
    return section


def drift_for_logs(section: dict[str, Any]) -> dict[str, Any]:
    """The day report's ``drift`` section with its field paths counted, not named.

    Field paths are the records' own keys (a key may be an e-mail address or an
    id), so only the report in S3 lists them; task logs carry no record content.
    """
    next_schema = section["next_schema"]
    return {
        **section,
        **{kind: len(section[kind]) for kind in ("new_fields", "mismatched", "declared_now")},
        "next_schema": None if next_schema is None else next_schema["version"],
    }

"""Schema versions and their evolution rules, and the catalog table and partitions over the moto server."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import uuid
from pathlib import Path

import pytest

from ndjson_pipeline.catalog import CatalogError, TableDefinition, ensure_table, glue_type, register_partitions
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import (
    DeclaredSchema,
    SchemaError,
    SchemaRegistry,
    evolution_problems,
    output_fields,
)
from ndjson_pipeline.layout import LakeLayout
from tools.local_stack import client

SCHEMAS = Path(__file__).resolve().parents[2] / "glue_scripts" / "schemas"
# The sample's fields as the first version of a dataset: the registry and table tests evolve it from there.
EVENTS = dataclasses.replace(
    DeclaredSchema.from_json((SCHEMAS / "events.json").read_text(), "events.json"), version=1, breaking=None
)
LAYOUT = LakeLayout("s3://acme-lake", "s3://acme-quarantine", "events")


def _with_field(schema: DeclaredSchema, version: int, path: str, spark_type: object, **extra) -> DeclaredSchema:
    """``schema`` with a field added (``user.tier`` adds inside the ``user`` struct)."""
    fields = copy.deepcopy(list(schema.fields))
    *parents, name = path.split(".")
    target = fields
    for parent in parents:
        target = next(f for f in target if f["name"] == parent)["type"]["fields"]
    target.append({"name": name, "type": spark_type, "nullable": True, "metadata": {}})
    return DeclaredSchema(version=version, fields=tuple(fields), **extra)


def _retyped(schema: DeclaredSchema, version: int, name: str, spark_type: object, **extra) -> DeclaredSchema:
    fields = [({**f, "type": spark_type} if f["name"] == name else f) for f in schema.fields]
    return DeclaredSchema(version=version, fields=tuple(fields), **extra)


def test_glue_types_follow_the_declared_spark_types():
    columns = {
        c["Name"]: c["Type"] for c in TableDefinition.for_dataset("db", LAYOUT, EVENTS, ConversionOptions()).columns
    }
    assert columns["user"] == "struct<id:string,country:string,age:bigint>"
    assert columns["items"] == "array<struct<sku:string,qty:bigint,price:double>>"
    assert columns["value"] == "double"
    assert (columns["event_time"], columns["amount"]) == ("timestamp", "decimal(12,2)")
    assert list(columns)[-3:] == ["_rescued_data", "_source_uri", "_manifest_id"]
    labels = {"type": "map", "keyType": "string", "valueType": {"type": "array", "elementType": "date"}}
    assert glue_type(labels) == "map<string,array<date>>"
    assert glue_type("float") == "float"
    with pytest.raises(SchemaError, match="'binary' has no Glue catalog type"):
        glue_type("binary")


def test_output_fields_depend_on_read_mode_and_lineage():
    strict = [f["name"] for f in output_fields(EVENTS.fields, rescue=False, lineage=False)]
    assert strict == [f["name"] for f in EVENTS.fields]
    assert all(f["nullable"] for f in output_fields(EVENTS.fields, rescue=True, lineage=False))


def test_added_fields_at_any_depth_are_compatible():
    evolved = _with_field(_with_field(EVENTS, 2, "tier", "string"), 2, "user.tier", "string")
    assert evolution_problems(EVENTS.fields, list(evolved.fields)) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: _retyped(s, 2, "value", "string"), "field 'value' changed type from double to string"),
        (lambda s: DeclaredSchema(2, tuple(f for f in s.fields if f["name"] != "count")), "field 'count' was removed"),
        (
            lambda s: _retyped(s, 2, "user", {"type": "struct", "fields": [s.fields[3]["type"]["fields"][0]]}),
            "field 'user.country' was removed",
        ),
        (
            lambda s: _retyped(s, 2, "items", {"type": "array", "elementType": "string", "containsNull": True}),
            "field 'items[]' changed type from struct to string",
        ),
        (lambda s: _retyped(s, 2, "amount", "decimal(14,2)"), "field 'amount' changed type from decimal(12,2) to"),
        (lambda s: _retyped(s, 2, "amount", "double"), "field 'amount' changed type from decimal(12,2) to double"),
        (lambda s: _retyped(s, 2, "event_time", "string"), "field 'event_time' changed type from timestamp to string"),
    ],
)
def test_breaking_changes_are_named(change, named):
    problems = evolution_problems(EVENTS.fields, list(change(EVENTS).fields))
    assert any(problem.startswith(named) for problem in problems), problems


def _map_of(value_type: object, nested: bool = False) -> dict:
    if nested:
        value_type = {"type": "struct", "fields": [{"name": "v", "type": value_type, "nullable": True, "metadata": {}}]}
    return {"type": "map", "keyType": "string", "valueType": value_type, "valueContainsNull": True}


def test_a_map_evolves_as_its_values_do():
    with_map = _with_field(EVENTS, 2, "labels", _map_of("long", nested=True))
    grown = copy.deepcopy(with_map.fields)
    grown[-1]["type"]["valueType"]["fields"].append({"name": "w", "type": "date", "nullable": True, "metadata": {}})
    assert evolution_problems(with_map.fields, list(grown)) == []  # a member added inside the map's values
    retyped = copy.deepcopy(with_map.fields)
    retyped[-1]["type"]["valueType"]["fields"][0]["type"] = "string"
    assert evolution_problems(with_map.fields, list(retyped)) == ["field 'labels{}.v' changed type from long to string"]


def _registry(tmp_path: Path, *versions: DeclaredSchema) -> SchemaRegistry:
    def doc(schema: DeclaredSchema) -> str:
        extra = {"breaking": schema.breaking} if schema.breaking else {}
        return json.dumps({**schema.struct_json(), "version": schema.version, **extra})

    (tmp_path / "history" / "events").mkdir(parents=True)
    for schema in versions[:-1]:
        (tmp_path / "history" / "events" / f"{schema.version}.json").write_text(doc(schema))
    (tmp_path / "events.json").write_text(doc(versions[-1]))
    return SchemaRegistry(tmp_path, "events")


def test_the_registry_accepts_a_chain_of_additions(tmp_path):
    current = _registry(tmp_path, EVENTS, _with_field(EVENTS, 2, "tier", "string")).check()
    assert current.version == 2
    assert [f["name"] for f in current.fields][-1] == "tier"


def test_the_registry_refuses_a_breaking_version_unless_it_says_why(tmp_path):
    with pytest.raises(SchemaError, match=r"version 2 of events breaks readers of version 1: field 'value' changed"):
        _registry(tmp_path / "a", EVENTS, _retyped(EVENTS, 2, "value", "string")).check()
    forced = _retyped(EVENTS, 2, "value", "string", breaking="value became text upstream; reprocess every day")
    assert _registry(tmp_path / "b", EVENTS, forced).check().breaking


def test_the_registry_needs_every_earlier_version(tmp_path):
    registry = _registry(tmp_path, EVENTS, _with_field(EVENTS, 2, "tier", "string"))
    (tmp_path / "history" / "events" / "1.json").unlink()
    with pytest.raises(SchemaError, match=r"version 2 but .*history/events/1\.json is missing"):
        registry.check()


def test_the_repository_schemas_are_a_valid_chain():
    for path in SCHEMAS.glob("*.json"):
        assert SchemaRegistry(SCHEMAS, path.stem).check().fields


@pytest.fixture
def glue(aws_endpoint):
    return client("glue", aws_endpoint)


def _definition(schema: DeclaredSchema, database: str) -> TableDefinition:
    return TableDefinition.for_dataset(database, LAYOUT, schema, ConversionOptions())


def test_the_table_is_created_evolved_and_protected(glue):
    database = f"db_{uuid.uuid4().hex[:8]}"
    assert ensure_table(glue, _definition(EVENTS, database)) == "created"
    assert ensure_table(glue, _definition(EVENTS, database)) == "unchanged"
    evolved = _with_field(EVENTS, 2, "user.tier", "string")
    assert ensure_table(glue, _definition(evolved, database)) == "updated from schema version 1 to 2"
    table = glue.get_table(DatabaseName=database, Name="events")["Table"]
    user = next(c for c in table["StorageDescriptor"]["Columns"] if c["Name"] == "user")
    assert user["Type"] == "struct<id:string,country:string,age:bigint,tier:string>"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert ensure_table(glue, _definition(EVENTS, database)).startswith("kept (table is at schema version 2")
    breaking = _retyped(evolved, 3, "count", "string")
    with pytest.raises(CatalogError, match=r"breaks readers of version 2: field 'count' changed type"):
        ensure_table(glue, _definition(breaking, database))
    assert ensure_table(glue, _definition(breaking, database), allow_breaking=True).startswith("updated")


def test_partitions_are_added_once_however_often_and_concurrently_asked(glue):
    definition = _definition(EVENTS, f"db_{uuid.uuid4().hex[:8]}")
    ensure_table(glue, definition)
    assert register_partitions(glue, definition, ["2026-11-24"]) == ["2026-11-24"]
    assert register_partitions(glue, definition, ["2026-11-24"]) == []
    days = [f"2026-10-{d:02d}" for d in range(1, 21)]
    added: list[str] = []
    threads = [
        threading.Thread(target=lambda: added.extend(register_partitions(glue, definition, days))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(added) == days  # each partition reported added exactly once
    partitions = glue.get_partitions(DatabaseName=definition.database, TableName="events")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == sorted([*days, "2026-11-24"])
    location = next(p for p in partitions if p["Values"] == ["2026-11-24"])["StorageDescriptor"]["Location"]
    assert location == "s3://acme-lake/events/dt=2026-11-24/"


def test_the_terraform_table_definitions_are_rendered_from_the_current_schemas():
    from tools.catalog import main

    assert main(["--check"]) == 0, "run: python -m tools.catalog"

"""The table schema: attribute names from resources.json, key formats, expression placeholders."""

from __future__ import annotations

from ndjson_pipeline.files import FileId
from ndjson_pipeline.ledger import TableSchema, WorkIndex, table_schema
from ndjson_pipeline.ledger.schema import instant_of, pending_partition, work_sort_key
from ndjson_pipeline.resources import ledger_spec


def _make_schema(**overrides) -> TableSchema:
    spec = {
        "partition_key": "id",
        "sort_key": "version",
        "ttl_attribute": "gone_at",
        "work_index": {"name": "todo", "partition_key": "todo_pk", "sort_key": "todo_sk"},
        "pending_shards": 4,
    }
    return TableSchema.from_spec({**spec, **overrides})


def test_the_schema_is_the_one_resources_json_declares():
    spec = ledger_spec()
    schema = table_schema()
    assert (schema.partition_key, schema.sort_key, schema.ttl_attribute) == (
        spec["partition_key"],
        spec["sort_key"],
        spec["ttl_attribute"],
    )
    assert (schema.index_name, schema.index_partition_key, schema.index_sort_key) == (
        spec["work_index"]["name"],
        spec["work_index"]["partition_key"],
        spec["work_index"]["sort_key"],
    )
    assert schema.pending_shards == spec["pending_shards"]


def test_keys_and_placeholders_use_the_declared_attribute_names():
    schema = _make_schema()
    file_id = FileId("landing", "incoming/2026/11/24/a b#c.ndjson", "e1")

    assert schema.file_key(file_id) == {"id": "F#landing/incoming/2026/11/24/a b#c.ndjson", "version": "V#e1"}
    assert schema.manifest_key("m1") == {"id": "M#m1", "version": "MANIFEST"}
    slot = schema.pending_slot("2026-11-24", str(file_id), "2026-11-24T01:00:00.000000+00:00")
    assert set(slot) == {"todo_pk", "todo_sk"}
    assert slot["todo_pk"].startswith("2026-11-24#P#")
    # Only the placeholders an expression uses: DynamoDB rejects unused ExpressionAttributeNames.
    assert schema.placeholders("SET #state = :s, #ttl = :t REMOVE #wpk", "attribute_not_exists(#pk)") == {
        "#pk": "id",
        "#state": "state",
        "#ttl": "gone_at",
        "#wpk": "todo_pk",
    }


def test_shards_spread_a_day_and_stay_stable():
    schema = _make_schema()
    shards = {schema.shard_of(f"b/k{i}#e") for i in range(200)}
    assert shards == set(range(4))
    assert schema.shard_of("b/k1#e") == schema.shard_of("b/k1#e")
    assert pending_partition("2026-11-24", 3) == "2026-11-24#P#03"


def test_index_sort_keys_start_with_their_instant():
    key = work_sort_key("2026-11-24T01:00:00.000000+00:00", "landing/k#e")
    assert instant_of(key) == "2026-11-24T01:00:00.000000+00:00"


def test_work_index_round_trips_as_json_and_queries_with_its_own_names():
    index = WorkIndex.of("t-ledger", _make_schema())
    assert WorkIndex.from_dict(index.as_dict()) == index
    request = index.query("2026-11-24#M", page_size=10, upper_sort_key="x#~", attributes=("size",))
    assert request["IndexName"] == "todo"
    assert request["KeyConditionExpression"] == "#wpk = :p AND #wsk <= :upper"
    assert request["ExpressionAttributeNames"] == {"#wpk": "todo_pk", "#wsk": "todo_sk", "#a0": "size"}
    assert request["ExpressionAttributeValues"] == {":p": {"S": "2026-11-24#M"}, ":upper": {"S": "x#~"}}

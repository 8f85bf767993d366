"""The lake read back through its catalog table, before and after an added field, with the real DAGs and job.

A reader sees the table Terraform (here: the local bootstrap) declares and the
partitions finalise adds. Every column type of the table must be the type the
Parquet files hold, and a query over the table's partitions must count exactly
the rows the job results report.
"""

from __future__ import annotations

import json
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.landing import day_prefix
from ndjson_pipeline.manifest import JobResult
from tests.e2e.conftest import deploy_next_schema_version, ingest, land, run, task_states
from tools.local_stack import client
from tools.sample_data import make_event

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

# As the catalog declares it: dt is a string partition key; files of different schema versions are read by name.
READ_OPTIONS = "hive_partitioning=true, hive_types={'dt': 'VARCHAR'}, union_by_name=true"
_HIVE = {
    pa.string(): "string",
    pa.int64(): "bigint",
    pa.int32(): "int",
    pa.int16(): "smallint",
    pa.int8(): "tinyint",
    pa.float64(): "double",
    pa.float32(): "float",
    pa.bool_(): "boolean",
    pa.timestamp("us", tz="UTC"): "timestamp",
    pa.date32(): "date",
}


def hive_type(arrow: pa.DataType) -> str:
    """How a reader of the catalog must declare a Parquet column of this Arrow type."""
    if pa.types.is_struct(arrow):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.type)}" for f in arrow) + ">"
    if pa.types.is_list(arrow):
        return f"array<{hive_type(arrow.value_type)}>"
    if pa.types.is_map(arrow):
        return f"map<{hive_type(arrow.key_type)},{hive_type(arrow.item_type)}>"
    if pa.types.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    return _HIVE[arrow]


def _results(stack, day: str) -> list[JobResult]:
    prefix = stack.settings.layout.result_uri(day, "").removesuffix(".json")
    return [JobResult.from_json(stack.storage.read_bytes(uri)) for uri in stack.storage.list(prefix)]


def _download_parquet(stack, target: Path) -> list[Path]:
    owner = stack.s3
    paths = []
    for page in owner.get_paginator("list_objects_v2").paginate(Bucket=stack.names.lake_bucket, Prefix="events/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                path = target / obj["Key"]  # keeps events/dt=.../part-....parquet for hive partitioning
                path.parent.mkdir(parents=True, exist_ok=True)
                owner.download_file(stack.names.lake_bucket, obj["Key"], str(path))
                paths.append(path)
    return paths


def _land_evolved_day(stack, day: str, files: int) -> int:
    """NDJSON files of ``day`` whose events carry the two new fields; returns their row count."""
    rng, rows = random.Random(11), 0
    for n in range(files):
        events = []
        for i in range(25):
            event = make_event(rng, f"v2-{n}-{i}", day)
            event["source"] = "web"
            event["user"]["tier"] = "gold"
            events.append(json.dumps(event))
        rows += len(events)
        key = f"{day_prefix(day, stack.settings)}evolved-{n}.ndjson"
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=("\n".join(events) + "\n").encode())
    return rows


def _check_table_against_the_lake(stack, glue, days: list[str], newest_day: str) -> None:
    database = stack.names.catalog_database
    table = glue.get_table(DatabaseName=database, Name="events")["Table"]
    partitions = glue.get_partitions(DatabaseName=database, TableName="events")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == sorted(days)
    with tempfile.TemporaryDirectory(prefix="catalog-") as target:
        paths = _download_parquet(stack, Path(target))
        newest = next(p for p in paths if f"/dt={newest_day}/" in str(p))
        written = {f.name: hive_type(f.type) for f in pq.read_schema(newest)}
        declared = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        assert declared == written, "the table must declare exactly the columns and types the newest files hold"
        counted = duckdb.sql(
            f"SELECT dt, count(*) FROM read_parquet('{target}/events/*/*.parquet', {READ_OPTIONS}) GROUP BY dt"
        ).fetchall()
    reported = {day: sum(r.rows_out for r in _results(stack, day)) for day in days}
    assert dict(counted) == reported


def test_the_catalog_follows_the_lake_across_an_added_field(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    glue = client("glue", stack.endpoint)
    first = land(stack, files=4)
    assert str(ingest(dags).state) == "success"
    assert str(run(dags, "ndjson_end_of_day", day=first.day).state) == "success"
    _check_table_against_the_lake(stack, glue, [first.day], newest_day=first.day)

    deploy_next_schema_version(stack, monkeypatch)

    second_day = (utcnow() - timedelta(days=1)).date().isoformat()  # yesterday: still watched by ingest
    evolved_rows = _land_evolved_day(stack, second_day, files=3)
    ingested = ingest(dags)
    assert str(ingested.state) == "success", task_states(ingested)
    assert str(run(dags, "ndjson_end_of_day", day=second_day).state) == "success"
    _check_table_against_the_lake(stack, glue, [first.day, second_day], newest_day=second_day)
    assert sum(r.rows_out for r in _results(stack, second_day)) == evolved_rows

    with tempfile.TemporaryDirectory(prefix="catalog-") as target:
        _download_parquet(stack, Path(target))
        rows = duckdb.sql(
            f"SELECT dt, source, user.tier, _rescued_data FROM read_parquet('{target}/events/*/*.parquet', "
            f"{READ_OPTIONS})"
        ).fetchall()
    new = [r for r in rows if r[0] == second_day]
    old = [r for r in rows if r[0] == first.day]
    assert len(new) == evolved_rows
    assert all(r[1:3] == ("web", "gold") for r in new), "the new fields land in their columns"
    assert all(r[3] is None or "source" not in r[3] for r in new), "nothing of them is rescued any more"
    assert len(old) == len(first.expected_rows)
    assert all(r[1] is None for r in old), "files written before the change read the new column as null"

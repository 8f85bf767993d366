"""Reprocessing days with the real DAG and job: after a schema change, lines quarantined before become rows.

Two days are converted in strict mode under schema version 1, so lines carrying a
field version 1 does not declare are quarantined. Version 2 declares it; the
reprocess converts the range again and swaps each day in. A reader of the catalog,
probed after every S3 and catalog call of the swap, must see the old day or the
new day, never a mix or a gap; afterwards the lake holds every valid row once,
the quarantine only the lines still bad, and the ledger's counts match the lake.
"""

from __future__ import annotations

import json
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.landing import day_prefix
from ndjson_pipeline.storage import Storage
from tests.e2e.conftest import (
    configure,
    deploy_next_schema_version,
    ingest,
    parquet_event_ids,
    quarantined_line_records,
    run,
    task_states,
    today,
)
from tools.local_stack import client
from tools.sample_data import make_event

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

STRICT = {"read_mode": "strict"}


def _land(stack, day: str, files: int) -> tuple[set[str], set[str], int]:
    """Files whose lines are plain events, events with a ``source`` field, or broken JSON.

    Returns the ids of plain events, the ids of the events with ``source``, and the broken lines' count.
    """
    rng, plain, sourced, broken = random.Random(day), set(), set(), 0
    for n in range(files):
        lines = []
        for i in range(30):
            event = make_event(rng, f"{day}-{n}-{i}", day)
            if i % 5 == 0:
                event["source"] = "web"
                sourced.add(event["event_id"])
            else:
                plain.add(event["event_id"])
            lines.append(json.dumps(event))
        lines.append('{"event_id": "broken')
        broken += 1
        key = f"{day_prefix(day, stack.settings)}reprocess-{n}.ndjson"
        stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    return plain, sourced, broken


class CatalogReader:
    """A reader of the day through the catalog: the partition's location, then every Parquet file under it."""

    def __init__(self, stack, glue, day: str) -> None:
        self.stack, self.glue, self.day = stack, glue, day
        self.seen: list[tuple[str, tuple[str, ...]]] = []

    def event_ids(self) -> list[str]:
        partition = self.glue.get_partition(
            DatabaseName=self.stack.names.catalog_database, TableName="events", PartitionValues=[self.day]
        )["Partition"]
        location = partition["StorageDescriptor"]["Location"]
        bucket, prefix = location.removeprefix("s3://").split("/", 1)
        keys = [
            obj["Key"]
            for page in self.stack.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".parquet") and "/" not in obj["Key"][len(prefix) :]
        ]
        with tempfile.TemporaryDirectory(prefix="reader-") as target:
            paths = []
            for n, key in enumerate(keys):
                paths.append(str(Path(target) / f"{n}.parquet"))
                self.stack.s3.download_file(bucket, key, paths[-1])
            if not paths:
                return []
            listed = ", ".join(f"'{p}'" for p in paths)
            return [r[0] for r in duckdb.sql(f"SELECT event_id FROM read_parquet([{listed}])").fetchall()]

    def probe(self, after: str) -> None:
        self.seen.append((after, tuple(sorted(self.event_ids()))))


def _probe_every_swap_call(monkeypatch, readers: list[CatalogReader]) -> None:
    """Read each day through the catalog after every S3 write or delete and every catalog update of the run."""

    def probed(cls, name):
        real = getattr(cls, name)

        def call(self, *args, **kwargs):
            outcome = real(self, *args, **kwargs)
            for reader in readers:
                reader.probe(f"{cls.__name__}.{name}")
            return outcome

        monkeypatch.setattr(cls, name, call)

    for name in ("copy", "delete", "write_bytes"):
        probed(Storage, name)
    probed(DatasetCatalog, "point_partitions")


def test_reprocessed_days_replay_their_quarantined_lines_and_readers_never_see_a_mix(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    glue = client("glue", stack.endpoint)
    configure(stack, monkeypatch, conversion=STRICT)
    days = [(utcnow() - timedelta(days=1)).date().isoformat(), today()]  # a range: yesterday and today
    landed = {day: _land(stack, day, files) for day, files in zip(days, (2, 4), strict=True)}
    assert str(ingest(dags).state) == "success"
    readers = {day: CatalogReader(stack, glue, day) for day in days}
    for day, (plain, _, _) in landed.items():
        closed = run(dags, "ndjson_end_of_day", day=day)
        assert str(closed.state) == "success", task_states(closed)
        assert sorted(readers[day].event_ids()) == sorted(plain), "strict v1 loads the plain events only"
    assert len(quarantined_line_records(stack)) == sum(len(sourced) + broken for _, sourced, broken in landed.values())
    ledger_before = stack.ledger.get_files([i for day in days for i in _identities(stack, day)])

    deploy_next_schema_version(stack, monkeypatch, conversion=STRICT)  # the table keeps the rescue column: null here
    lake_before = _lake_objects(stack)
    dry = run(dags, "ndjson_reprocess", day=days[0], last_day=days[1])
    assert str(dry.state) == "success", task_states(dry)
    plans = {p["day"]: p for p in _xcom(dry, "plan_rebuilds", "plans")}
    for day, (plain, sourced, broken) in landed.items():
        planned = plans[day]
        assert (planned["rows_out"], planned["rows_quarantined"]) == (len(plain), len(sourced) + broken)
    assert (plans[days[0]]["files"], plans[days[1]]["files"]) == (2, 4)
    assert _lake_objects(stack) == lake_before, "a dry run changes nothing"
    assert stack.ledger.get_files(list(ledger_before)) == ledger_before

    _probe_every_swap_call(monkeypatch, list(readers.values()))
    real = run(dags, "ndjson_reprocess", day=days[0], last_day=days[1], dry_run=False)
    assert str(real.state) == "success", task_states(real)

    for day, (plain, sourced, _) in landed.items():
        old, new = tuple(sorted(plain)), tuple(sorted(plain | sourced))
        seen = readers[day].seen
        assert seen, "the swap was probed"
        mixed = [(after, len(ids)) for after, ids in seen if ids not in (old, new)]
        assert not mixed, f"a reader of {day} saw neither the old day nor the new one: {mixed[:3]}"
        assert seen[-1][1] == new
    # The lake: every valid row once, the new field in its column; the quarantine: only the broken lines.
    valid = set().union(*(plain | sourced for plain, sourced, _ in landed.values()))
    ids = parquet_event_ids(stack)
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == valid
    broken = sum(b for _, _, b in landed.values())
    assert len(quarantined_line_records(stack)) == broken
    assert not stack.storage.list(stack.settings.layout.work_uri + "/"), "the rebuild layout is removed"
    # The ledger agrees with the lake, file by file, and each day's report carries the action.
    after = stack.ledger.get_files(list(ledger_before))
    assert sum(f.rows_out for f in after.values()) == len(ids)
    assert sum(f.rows_quarantined for f in after.values()) == broken
    assert all(f.rows_in == f.rows_out + f.rows_quarantined for f in after.values())
    assert {f.manifest_id for f in after.values()} == {f.manifest_id for f in ledger_before.values()}
    for day, (plain, sourced, _) in landed.items():
        reclosed = run(dags, "ndjson_end_of_day", day=day)
        assert str(reclosed.state) == "success", task_states(reclosed)
        report = _xcom(reclosed, "report_day")
        assert report["complete"]
        assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
        assert report["rows_out"] == len(plain | sourced)
        (action,) = [r for r in report["maintenance"] if r["action"] == "reprocess_day"]
        assert (action["rows_out_before"], action["rows_out_after"]) == (len(plain), len(plain | sourced))
        assert action["requested_by"] == f"ndjson_reprocess/{real.run_id}"

    # A second reprocess of a day (same code, same raw files) rebuilds the same rows.
    again = run(dags, "ndjson_reprocess", day=days[1], dry_run=False)
    assert str(again.state) == "success", task_states(again)
    assert sorted(parquet_event_ids(stack)) == sorted(ids)


def _identities(stack, day: str) -> list[str]:
    from ndjson_pipeline.files import FileId

    bucket = stack.names.landing_bucket
    listing = stack.s3.list_objects_v2(Bucket=bucket, Prefix=day_prefix(day, stack.settings))["Contents"]
    return sorted(str(FileId.from_listing(bucket, obj)) for obj in listing)


def _lake_objects(stack) -> dict[str, str]:
    found = {}
    for bucket in (stack.names.lake_bucket, stack.names.quarantine_bucket):
        for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="events/"):
            found |= {f"{bucket}/{o['Key']}": o["ETag"] for o in page.get("Contents", [])}
    return found


def _xcom(dag_run, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        (row,) = session.scalars(query).all()
        return XComModel.deserialize_value(row)

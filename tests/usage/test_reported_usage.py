"""Usage that no task's client sends: the trigger's polls, reported in its event, and Glue's billed runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.ledger import WorkIndex
from ndjson_pipeline.usage import Usage, read_day_usage, write_usage
from ndjson_pipeline_airflow.triggers import PendingWorkTrigger
from tests.factories import DAY, register_files
from tools.local_stack import aws_connection_env


def test_the_pending_work_trigger_reports_every_poll_in_its_event(stack, monkeypatch):
    for name, value in aws_connection_env(stack.endpoint).items():
        monkeypatch.setenv(name, value)
    days = [DAY, "2026-11-23"]
    register_files(stack, 1)
    register_files(stack, 1, prefix="g", day_path="incoming/2026/11/23/")
    trigger = PendingWorkTrigger(
        work_index=WorkIndex.of(stack.names.ledger_table).as_dict(),
        dag_run="ndjson_ingest/scheduled__2026-11-24T10:00:00+00:00",
        enough_files=5,
        enough_bytes=10**9,
        max_wait_seconds=3600,
        deadline=iso(utcnow() - timedelta(seconds=1)),  # one poll, then the timeout event
        poll_seconds=1,
    )

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(first_event())

    assert payload["status"] == "timeout"
    polls = 1
    shards = stack.ledger.work_index.shards
    usage = Usage.from_dict(payload["usage"])
    # Each poll reads the open-days registry (one page here), then every open day's shards.
    assert usage.requests == {"dynamodb.Query": polls * (1 + len(days) * shards)}
    assert usage.read_units > 0  # DynamoDB's (here moto's) report, asked for on every query


def test_a_day_sums_its_own_records_only(stack):
    layout = stack.settings.layout
    write_usage(stack.storage, layout, DAY, "a/run:1+x.task.-1.1", Usage(write_units=2.5))
    write_usage(stack.storage, layout, DAY, "glue-m", Usage(glue_runs=1), counts_own_write=False)
    write_usage(stack.storage, layout, "2026-11-25", "b", Usage(write_units=100))
    total, records = read_day_usage(stack.storage, layout, DAY)
    assert records == 2
    assert (total.write_units, total.glue_runs) == (2.5, 1)
    assert total.requests == {"s3.PutObject": 1}
    assert all("/dt=2026-11-24/" in uri for uri in stack.storage.list(layout.usage_prefix(DAY)))

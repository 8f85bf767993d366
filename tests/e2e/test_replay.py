"""Replaying a file a conversion quarantined whole, with the real DAGs and job: after the fix it converts once.

A day is converted with ``max_decompressed_mb`` 1, so its one large file is
quarantined whole as "too large"; the limit is then raised (the fix) and the
maintenance DAG replays the day's quarantined files; the end-of-day run
converts it. The day must then hold every valid row exactly once.
"""

from __future__ import annotations

import json
import random

import pytest

from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import day_prefix
from tests.e2e.conftest import configure, ingest, parquet_event_ids, run, task_states, today
from tests.e2e.expectations import assert_day_converted_exactly
from tools.sample_data import make_event
from tools.sample_day import sample_day, upload

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def test_a_replayed_quarantined_file_converts_once_after_the_fix(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    configure(stack, monkeypatch, conversion={"max_decompressed_mb": 1})
    sample = sample_day(today(), stack.settings, files=3, seed=13)
    rng = random.Random(13)
    events = [make_event(rng, f"large-{i}", sample.day) for i in range(2500)]
    body = ("\n".join(json.dumps(e) for e in events) + "\n").encode()
    assert len(body) > 1024 * 1024, "the file must be over the 1 MB limit"
    key = f"{day_prefix(sample.day, stack.settings)}large.ndjson"
    sample.add(key, body, {e["event_id"] for e in events}, 0)
    upload(sample, stack.s3, stack.sqs, stack.queue_url, stack.names.landing_bucket)
    assert str(ingest(dags).state) == "success"
    closed = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(closed.state) == "success", task_states(closed)
    (large,) = [r for r in _day_records(stack, sample.day) if r.file.key == key]
    assert (large.state, large.reason.split(":")[0]) == (FileState.QUARANTINED, "too large")
    assert not {f"large-{i}" for i in range(2500)} & set(parquet_event_ids(stack))

    configure(stack, monkeypatch)  # the fix: the default limit
    replay = run(dags, "ndjson_maintenance", action="replay_quarantined", day=sample.day, dry_run=False)
    assert str(replay.state) == "success", task_states(replay)
    assert stack.ledger.get_file(large.identity).state is FileState.PENDING
    reclosed = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(reclosed.state) == "success", task_states(reclosed)

    report = assert_day_converted_exactly(stack, sample)
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
    assert stack.ledger.get_file(large.identity).state is FileState.DONE
    (action,) = report["maintenance"]
    assert (action["action"], action["changed"]) == ("replay_quarantined", [large.identity])


def _day_records(stack, day: str):
    bucket = stack.names.landing_bucket
    listing = stack.s3.list_objects_v2(Bucket=bucket, Prefix=day_prefix(day, stack.settings))["Contents"]
    return stack.ledger.get_files([str(FileId.from_listing(bucket, obj)) for obj in listing]).values()

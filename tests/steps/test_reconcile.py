"""The listing reconcile over the moto server: only versions the ledger lacks are registered."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.outputs import read_manifest
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.reconcile import DayTooOldError, check_day_can_be_closed, reconcile_day
from tests.factories import (
    DAY,
    DAY_PATH,
    TODAY,
    file_states,
    finalise,
    make_body,
    make_record,
    plan,
    publish_result,
    queue_depth,
    send,
    wait_until,
)


def _identity(stack, key, etag="e0"):
    return f"{stack.names.landing_bucket}/{key}#{etag}"


def _etag(stack, key):
    return stack.s3.head_object(Bucket=stack.names.landing_bucket, Key=key)["ETag"].strip('"')


def _drain(stack, **kwargs):
    return drain_queue(stack.sqs, stack.queue_url, stack.ledger, stack.settings, **kwargs)


def _discard_all_messages(stack):
    while msgs := stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages"
    ):
        for m in msgs:
            stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])


def test_reconcile_registers_only_versions_the_ledger_lacks(stack):
    bucket = stack.names.landing_bucket
    for i in range(5):
        stack.s3.put_object(Bucket=bucket, Key=f"{DAY_PATH}r{i}.ndjson", Body=f'{{"i": {i}}}\n'.encode())
    stack.s3.put_object(Bucket=bucket, Key="incoming/2026/11/25/next-day.ndjson", Body=b"{}\n")
    wait_until(lambda: queue_depth(stack)[0] >= 6, "the six objects' notifications")
    _discard_all_messages(stack)  # every notification is lost ...
    heard = [f"{DAY_PATH}r{i}.ndjson" for i in (0, 1)]  # ... but these two are redelivered
    send(stack, *(make_body(make_record(bucket, k, etag=_etag(stack, k), size=9)) for k in heard))
    _drain(stack)

    report = reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY, today=TODAY)

    assert (report.seen, report.already_known, report.registered) == (5, 2, 3)
    assert report.states == {"PENDING": 5}
    assert stack.ledger.get_file(_identity(stack, f"{DAY_PATH}r4.ndjson", _etag(stack, f"{DAY_PATH}r4.ndjson")))
    again = reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY, today=TODAY)
    assert (again.seen, again.already_known, again.registered) == (5, 5, 0)


def _expire_terminal_records(stack, identities):
    """What DynamoDB's TTL does once terminal_ttl_days have passed: the records of converted versions go."""
    for identity in identities:
        key = stack.ledger._table.schema.file_key(FileId.parse(identity))
        stack.dynamodb.delete_item(TableName=stack.names.ledger_table, Key=encode_item(key))


def test_reclosing_a_day_whose_records_expired_registers_nothing_again(small_batches):
    stack = small_batches
    bucket = stack.names.landing_bucket
    for i in range(4):
        stack.s3.put_object(Bucket=bucket, Key=f"{DAY_PATH}old{i}.ndjson", Body=f'{{"i": {i}}}\n'.encode())
    reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY, today=TODAY)
    (ref,) = plan(stack)
    publish_result(stack, ref)
    finalise(stack, ref)
    identities = [f.identity for f in read_manifest(stack.storage, stack.settings, ref).files]
    assert set(file_states(stack, identities).values()) == {FileState.DONE}
    _expire_terminal_records(stack, identities)
    later = date.fromisoformat(DAY) + timedelta(days=stack.settings.terminal_ttl_days + 1)

    with pytest.raises(PipelineError) as refused:
        reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY, today=later)

    # Registered again, these versions would be converted under new manifest ids: their rows twice in the lake.
    assert file_states(stack, identities) == {}
    assert list(stack.ledger.iter_pending(DAY)) == []
    message = str(refused.value)
    assert "landing_retention" in message
    assert "terminal_ttl_days" in message


def test_a_day_is_closable_until_its_landing_data_expires(stack):
    day = date.fromisoformat(DAY)
    retention = stack.settings.landing_retention_days
    check_day_can_be_closed(DAY, stack.settings, day + timedelta(days=retention - 1))
    with pytest.raises(DayTooOldError, match=f"{retention} days old"):
        check_day_can_be_closed(DAY, stack.settings, day + timedelta(days=retention))

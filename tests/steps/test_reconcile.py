"""The listing reconcile over the moto server: only versions the ledger lacks are registered."""

from __future__ import annotations

import time

from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.reconcile import reconcile_day
from tests.factories import DAY, DAY_PATH, make_body, make_record, send


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
    time.sleep(1.5)
    _discard_all_messages(stack)  # every notification is lost ...
    heard = [f"{DAY_PATH}r{i}.ndjson" for i in (0, 1)]  # ... but these two are redelivered
    send(stack, *(make_body(make_record(bucket, k, etag=_etag(stack, k), size=9)) for k in heard))
    _drain(stack)

    report = reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY)

    assert (report.seen, report.already_known, report.registered) == (5, 2, 3)
    assert report.states == {"PENDING": 5}
    assert stack.ledger.get_file(_identity(stack, f"{DAY_PATH}r4.ndjson", _etag(stack, f"{DAY_PATH}r4.ndjson")))
    again = reconcile_day(stack.s3, stack.ledger, stack.settings, bucket, DAY)
    assert (again.seen, again.already_known, again.registered) == (5, 5, 0)

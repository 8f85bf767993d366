"""SQS intake over the moto server: every notification ends as a ledger record, or stays queued."""

from __future__ import annotations

import json

import pytest

from ndjson_pipeline.files import FileState
from ndjson_pipeline.steps.intake import MalformedMessageError, drain_queue, parse_notification
from tests.factories import DAY, DAY_PATH, make_body, make_record, mwaa_ledger, queue_depth, send, wait_until


def _drain(stack, **kwargs):
    return drain_queue(stack.sqs, stack.queue_url, stack.ledger, stack.settings, **kwargs)


def _identity(stack, key, etag="e0"):
    return f"{stack.names.landing_bucket}/{key}#{etag}"


def _purge_test_events(stack):
    """Bootstrapping sends an s3:TestEvent; drain it so each test starts from an empty queue."""
    report = _drain(stack)
    assert report.test_events >= 1


def test_real_upload_is_registered_pending_and_its_message_deleted(stack):
    _purge_test_events(stack)
    key = f"{DAY_PATH}real upload ü+1.ndjson"
    stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=b'{"a": 1}\n')
    wait_until(lambda: queue_depth(stack)[0] == 1, "the upload's notification")  # moto delivers it in the background

    report = _drain(stack)

    assert report.registered == 1
    assert report.deleted == 1
    item = stack.ledger.get_file(_identity(stack, key, _etag(stack, key)))
    assert item.state == FileState.PENDING
    assert item.file.key == key
    assert item.day == DAY
    assert queue_depth(stack) == (0, 0)


def _etag(stack, key):
    return stack.s3.head_object(Bucket=stack.names.landing_bucket, Key=key)["ETag"].strip('"')


def test_duplicate_events_register_one_version(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    body = make_body(make_record(bucket, f"{DAY_PATH}a.ndjson"))
    send(stack, body, body)
    send(stack, body)

    report = _drain(stack)

    assert report.registered == 1
    assert report.already_known == 2
    assert report.deleted == 3
    assert stack.ledger.get_file(_identity(stack, f"{DAY_PATH}a.ndjson")).state == FileState.PENDING


def test_url_encoded_and_unicode_keys_are_decoded(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    keys = [f"{DAY_PATH}with space+plus.ndjson", f"{DAY_PATH}ünïcödé/日本語.jsonl", f"{DAY_PATH}pct%41.json"]
    send(stack, *(make_body(make_record(bucket, k)) for k in keys))
    raw = json.loads(make_body(make_record(bucket, keys[0])))
    assert raw["Records"][0]["s3"]["object"]["key"].endswith("with+space%2Bplus.ndjson")

    report = _drain(stack)

    assert report.registered == 3
    for key in keys:
        assert stack.ledger.get_file(_identity(stack, key)).file.key == key


def test_test_event_and_non_created_events_are_deleted_without_ledger_writes(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket})
    removed = make_body(make_record(bucket, f"{DAY_PATH}gone.ndjson", event_name="ObjectRemoved:Delete"))
    send(stack, test_event, removed)

    report = _drain(stack)

    assert report.test_events == 1
    assert report.ignored_events == 1
    assert report.deleted == 2
    assert report.registered == 0
    assert stack.ledger.get_file(_identity(stack, f"{DAY_PATH}gone.ndjson")) is None


@pytest.mark.parametrize(
    "body",
    ["not json at all", "[1, 2]", json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), "{}"],
)
def test_malformed_body_is_counted_and_left_for_the_dlq_while_the_rest_is_stored(stack, body):
    _purge_test_events(stack)
    good = make_body(make_record(stack.names.landing_bucket, f"{DAY_PATH}good.ndjson"))
    send(stack, body, good)

    report = _drain(stack)

    assert report.malformed == 1
    assert report.registered == 1
    assert report.deleted == 1
    assert queue_depth(stack) == (0, 1)  # the malformed one is in flight, not deleted


def test_malformed_message_reaches_the_dlq_after_max_receives(stack):
    _purge_test_events(stack)
    send(stack, "garbage")
    stack.sqs.set_queue_attributes(QueueUrl=stack.queue_url, Attributes={"VisibilityTimeout": "0"})

    malformed = sum(_drain(stack, max_messages=1).malformed for _ in range(8))

    assert malformed == 5  # the bootstrap's maxReceiveCount
    assert queue_depth(stack, stack.dlq_url)[0] == 1


def test_crash_between_ledger_write_and_delete_makes_redelivery_harmless(stack, monkeypatch):
    _purge_test_events(stack)
    key = f"{DAY_PATH}crash.ndjson"
    send(stack, make_body(make_record(stack.names.landing_bucket, key)))
    stack.sqs.set_queue_attributes(QueueUrl=stack.queue_url, Attributes={"VisibilityTimeout": "1"})

    def crash(**_kwargs):
        raise ConnectionError("worker killed before delete")

    with monkeypatch.context() as patch:
        patch.setattr(stack.sqs, "delete_message_batch", crash)
        with pytest.raises(ConnectionError):
            _drain(stack)
    identity = _identity(stack, key)
    assert stack.ledger.get_file(identity).state == FileState.PENDING
    manifest = stack.ledger.claim_batch(DAY, max_files=10, max_bytes=10**9, lease_seconds=600)
    assert manifest is not None
    wait_until(lambda: queue_depth(stack)[0] == 1, "the undeleted message visible again")

    report = _drain(stack)

    assert report.already_known == 1
    assert report.registered == 0
    assert report.deleted == 1
    assert stack.ledger.get_file(identity).state == FileState.CLAIMED  # redelivery did not reset the claim


def test_overwrite_in_order_registers_both_versions(stack):
    _purge_test_events(stack)
    bucket, key = stack.names.landing_bucket, f"{DAY_PATH}over.ndjson"
    send(stack, make_body(make_record(bucket, key, etag="A", sequencer="0055AED6DCD90281E5")))
    _drain(stack)
    send(stack, make_body(make_record(bucket, key, etag="B", sequencer="0055AED6DCD90281E6")))

    report = _drain(stack)

    assert report.registered == 1
    assert stack.ledger.get_file(_identity(stack, key, "A")).state == FileState.PENDING
    assert stack.ledger.get_file(_identity(stack, key, "B")).state == FileState.PENDING


def test_versions_of_a_key_in_any_order_are_all_recorded_pending(stack):
    """Intake records every version; which one is current is S3's answer at conversion (the job's If-Match).

    tests/glue/test_job.py and tests/e2e/test_end_to_end.py show a version S3 no
    longer holds ending QUARANTINED as superseded, its rows never loaded.
    """
    _purge_test_events(stack)
    bucket, key = stack.names.landing_bucket, f"{DAY_PATH}reorder.ndjson"
    send(stack, make_body(make_record(bucket, key, etag="NEW", sequencer="0100")))
    _drain(stack)
    send(stack, make_body(make_record(bucket, key, etag="OLD", sequencer="FF"), make_record(bucket, key, etag="NEW")))

    report = _drain(stack)

    assert (report.registered, report.already_known, report.deleted) == (1, 1, 1)
    old = stack.ledger.get_file(_identity(stack, key, "OLD"))
    assert (old.state, old.sequencer) == (FileState.PENDING, "FF".rjust(32, "0"))
    assert stack.ledger.get_file(_identity(stack, key, "NEW")).state == FileState.PENDING


@pytest.mark.parametrize(
    ("key", "size", "reason"),
    [
        (f"{DAY_PATH}data.csv", 10, "unsupported file type"),
        (f"{DAY_PATH}empty.ndjson", 0, "empty object"),
        (f"{DAY_PATH}huge.ndjson.gz", 10**12, "exceeds max_file_bytes"),
        ("incoming/misplaced.ndjson", 10, "outside the landing layout"),
    ],
)
def test_rejected_file_is_recorded_quarantined_with_its_reason(stack, key, size, reason):
    _purge_test_events(stack)
    send(stack, make_body(make_record(stack.names.landing_bucket, key, size=size)))

    report = _drain(stack)

    assert report.quarantined == 1
    assert report.deleted == 1
    item = stack.ledger.get_file(_identity(stack, key))
    assert item.state == FileState.QUARANTINED
    assert reason in item.reason
    assert item.expires_at is not None


def test_intake_stops_at_its_message_limit_and_leaves_the_rest_queued(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    send(stack, *(make_body(make_record(bucket, f"{DAY_PATH}f{i}.ndjson")) for i in range(25)))

    report = _drain(stack, max_messages=12)

    assert report.messages == 12
    assert report.stopped_because == "message limit"
    assert queue_depth(stack)[0] == 13


def test_intake_stops_at_the_first_receive_that_drains_the_queue(stack):
    """A receive bringing fewer messages than asked ends the run: no long poll per straggler, the next run has them."""
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    send(stack, *(make_body(make_record(bucket, f"{DAY_PATH}d{i}.ndjson")) for i in range(25)))
    receives = []
    stack.sqs.meta.events.register(
        "provide-client-params.sqs.ReceiveMessage", lambda params, **_: receives.append(dict(params))
    )

    report = _drain(stack)

    assert report.stopped_because == "queue drained"
    assert (report.messages, report.registered, report.deleted) == (25, 25, 25)
    assert [r["MaxNumberOfMessages"] for r in receives] == [10, 10, 10]  # 10 + 10 + 5, and no empty wait after
    assert queue_depth(stack) == (0, 0)


def test_receives_are_registered_a_transaction_at_a_time_and_deleted_ten_at_a_time(stack):
    """95 messages: 90 registered in one transaction once held, the last 5 when the queue drains; 10 deletes."""
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    send(stack, *(make_body(make_record(bucket, f"{DAY_PATH}h{i}.ndjson")) for i in range(95)))
    ledger, recording = mwaa_ledger(stack, "transact_write_items")
    deletes = []
    stack.sqs.meta.events.register(
        "provide-client-params.sqs.DeleteMessageBatch", lambda params, **_: deletes.append(len(params["Entries"]))
    )

    report = drain_queue(stack.sqs, stack.queue_url, ledger, stack.settings)

    assert (report.messages, report.registered, report.deleted) == (95, 95, 95)
    sent = [len(r["TransactItems"]) for r in recording.requests["transact_write_items"]]
    assert sent == [92, 7]  # each: the files, the day's group and the day's touch
    assert deletes == [10] * 9 + [5]
    assert queue_depth(stack) == (0, 0)


def test_held_messages_are_stored_before_a_failed_receive_ends_the_run(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    send(stack, *(make_body(make_record(bucket, f"{DAY_PATH}f{i}.ndjson")) for i in range(30)))
    receives = []

    def fail_third_receive(**_):
        receives.append(1)
        if len(receives) == 3:
            raise ConnectionError("injected: the receive failed")

    stack.sqs.meta.events.register("before-call.sqs.ReceiveMessage", fail_third_receive)
    try:
        with pytest.raises(ConnectionError, match="injected"):
            _drain(stack)
    finally:
        stack.sqs.meta.events.unregister("before-call.sqs.ReceiveMessage", fail_third_receive)

    registered = [_identity(stack, f"{DAY_PATH}f{i}.ndjson") for i in range(30)]
    states = stack.ledger.get_states(registered)
    assert len(states) == 20  # the two receives before it
    assert set(states.values()) == {FileState.PENDING}
    assert queue_depth(stack)[0] == 10


def test_intake_stops_when_its_time_budget_is_spent(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    send(stack, *(make_body(make_record(bucket, f"{DAY_PATH}t{i}.ndjson")) for i in range(30)))
    ticks = iter(range(0, 1000, 10))

    report = _drain(stack, time_budget_seconds=25, clock=lambda: next(ticks))

    assert report.stopped_because == "time budget"
    assert 0 < report.messages < 30


def test_parse_notification_reads_sequencer_version_and_strips_quotes():
    body = make_body(make_record("b", f"{DAY_PATH}x.ndjson", etag='"abc"', sequencer="01", version_id="v1"))

    parsed = parse_notification(body)

    (created,) = parsed.created
    assert (created.etag, created.sequencer, created.version_id) == ("abc", "01", "v1")


@pytest.mark.parametrize(("field", "value"), [("size", "SECRET-42"), ("size", ["SECRET-42"]), ("eTag", None)])
def test_why_a_body_is_malformed_never_quotes_its_values(field, value):
    """The reason is logged; a body is data. ``int("SECRET-42")`` would quote the value in its error."""
    record = make_record("b", f"{DAY_PATH}x.ndjson")
    if value is None:
        del record["s3"]["object"][field]
    else:
        record["s3"]["object"][field] = value

    with pytest.raises(MalformedMessageError) as raised:
        parse_notification(make_body(record))

    assert "SECRET" not in str(raised.value)
    assert str(raised.value).startswith("record 0 ")


def _long_key(total_bytes: int) -> str:
    """A landing key of exactly ``total_bytes`` UTF-8 bytes (S3 allows up to 1,024)."""
    stem = f"{DAY_PATH}long-"
    suffix = ".ndjson"
    return stem + "k" * (total_bytes - len(stem) - len(suffix)) + suffix


def test_a_key_of_a_thousand_bytes_is_accepted_with_its_batch_mates(stack):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    long_key = _long_key(1000)
    keys = [long_key, *(f"{DAY_PATH}mate-{i}.ndjson" for i in range(9))]
    send(stack, *(make_body(make_record(bucket, k)) for k in keys))  # one receive batch of ten

    report = _drain(stack)

    assert (report.registered, report.deleted) == (10, 10)
    assert queue_depth(stack) == (0, 0)
    assert stack.ledger.get_file(_identity(stack, long_key)).state == FileState.PENDING
    manifest = stack.ledger.claim_batch(DAY, max_files=10, max_bytes=10**9, lease_seconds=600)
    assert long_key in {f.key for f in manifest.files}


def test_a_key_longer_than_s3_allows_is_quarantined_with_its_reason(stack):
    _purge_test_events(stack)
    too_long = _long_key(1100)
    send(stack, make_body(make_record(stack.names.landing_bucket, too_long)))

    report = _drain(stack)

    assert (report.quarantined, report.deleted) == (1, 1)
    item = stack.ledger.get_file(_identity(stack, too_long))
    assert item.state == FileState.QUARANTINED
    assert "1,024" in item.reason


def test_a_message_the_ledger_refuses_stays_for_the_dlq_and_its_batch_mates_are_stored(stack, caplog):
    _purge_test_events(stack)
    bucket = stack.names.landing_bucket
    # No S3 key can hold a lone surrogate; a body claiming one cannot be stored (nor encoded for DynamoDB).
    poison = make_body(make_record(bucket, f"{DAY_PATH}ok.ndjson")).replace("ok.ndjson", "bad\\ud800.ndjson")
    good = [make_body(make_record(bucket, f"{DAY_PATH}good-{i}.ndjson")) for i in range(9)]
    send(stack, poison, *good)

    report = _drain(stack)

    assert (report.registered, report.deleted) == (9, 9)
    assert report.unstored == 1
    assert queue_depth(stack) == (0, 1)  # in flight: SQS moves it to the DLQ after maxReceiveCount
    assert "left for the DLQ" in caplog.text

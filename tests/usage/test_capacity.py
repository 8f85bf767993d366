"""DynamoDB's capacity rules on item sizes, and the meter that applies them to a ledger's requests over moto."""

from __future__ import annotations

import pickle

import pytest

from ndjson_pipeline.landing import registration_for
from ndjson_pipeline.usage import RequestRecorder
from ndjson_pipeline.usage.capacity import item_size, read_units, value_size, write_units
from tests.conftest import make_stack
from tests.factories import DAY, DAY_PATH


@pytest.mark.parametrize(
    ("typed", "size"),
    [
        ({"S": "abc"}, 3),
        ({"S": "é"}, 2),
        ({"N": "12345"}, 4),
        ({"N": "-0.0100"}, 2),
        ({"BOOL": True}, 1),
        ({"SS": ["ab", "c"]}, 3),
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + 3 + 3),
        ({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1),
    ],
)
def test_value_sizes_follow_dynamodb(typed, size):
    assert value_size(typed) == size


def test_units_round_up_per_started_kilobyte_and_four_kilobytes():
    assert item_size({"pk": {"S": "x" * 1022}}) == 1024
    assert write_units(0, 1024) == 1
    assert write_units(1025, 10) == 2
    assert write_units(0, 10, transactional=True) == 2
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097, consistent=False) == 1.0
    assert read_units(0, consistent=False) == 0.5


def _registrations(stack, count, size=3_500_000):
    return [
        registration_for(
            stack.names.landing_bucket, f"{DAY_PATH}m{i}.ndjson", size, f"e{i}", f"{DAY}T01:00:00+00:00", stack.settings
        )
        for i in range(count)
    ]


def _ledger_client(stack):
    """The DynamoDB client the ledger sends its requests with (the MWAA identity's)."""
    return stack.ledger._table.client


def test_computed_units_of_registering_and_claiming(aws_endpoint):
    stack = make_stack(aws_endpoint)
    recorder = RequestRecorder(computed_capacity=True)
    recorder.attach(_ledger_client(stack))
    recorder.attach(_ledger_client(stack))  # attaching twice counts once

    stack.ledger.register(_registrations(stack, 10))
    registered = recorder.take()
    # One transaction; each new file item (< 1 KB) costs 2 transactional units, and never enters the index; their
    # group (< 1 KB here) 2 and 1 for entering the pending index; the update of the day's open-days item 2 more.
    assert registered.requests == {"dynamodb.TransactWriteItems": 1}
    assert registered.write_units == 10 * 2 + (2 + 1) + 2

    manifest = stack.ledger.claim_batch(DAY, max_files=99, max_bytes=10**12, lease_seconds=600)
    claimed = recorder.take()
    assert len(manifest.files) == 10
    # The group: 2 (transactional put) + 1 (leaves the index); the manifest: 2 + 1 (enters the open index).
    assert claimed.write_units == 3 + 3
    # The claim read every pending shard (one eventually consistent index query each, at least half a unit), then
    # the group it chose, consistently (1 unit).
    assert claimed.requests["dynamodb.Query"] == stack.ledger.work_index.shards
    assert claimed.requests["dynamodb.BatchGetItem"] == 1
    assert claimed.read_units == 0.5 * stack.ledger.work_index.shards + 1


def test_a_refused_write_is_billed_at_the_size_of_the_item_as_it_is(aws_endpoint):
    stack = make_stack(aws_endpoint)
    stack.ledger.register(_registrations(stack, 1))
    recorder = RequestRecorder(computed_capacity=True)
    recorder.attach(_ledger_client(stack))
    outcome = stack.ledger.register(_registrations(stack, 1))  # the same version again: the put is refused
    assert outcome.already_known
    usage = recorder.take()
    # Cancelled, the transaction is still billed: 2 units each for the file's item as it is, the group it would have
    # created (absent: the minimum) and the day's open-days item; no index write.
    assert usage.write_units == 2 + 2 + 2


def test_reported_units_come_from_the_response(aws_endpoint):
    stack = make_stack(aws_endpoint)
    recorder = RequestRecorder()
    recorder.attach(_ledger_client(stack))
    stack.ledger.get_manifest("none")
    usage = recorder.take()
    assert usage.requests == {"dynamodb.GetItem": 1}
    # A consistent read of an absent item: DynamoDB's minimum of one unit, as DynamoDB Local reports it once asked
    # (the recorder asks).
    assert usage.read_units == 1.0


def test_a_recorder_pickles_with_its_counts_and_counts_again_after(aws_endpoint):
    stack = make_stack(aws_endpoint)
    recorder = RequestRecorder()
    recorder.attach(stack.s3)
    stack.s3.list_buckets()
    copy = pickle.loads(pickle.dumps(recorder))  # noqa: S301 - its own bytes, as Spark ships it to a task
    assert copy.usage.requests == {"s3.ListBuckets": 1}
    copy.attach(stack.s3)
    stack.s3.list_buckets()
    assert copy.take().requests == {"s3.ListBuckets": 2}
    assert recorder.take().requests == {"s3.ListBuckets": 2}

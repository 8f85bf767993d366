"""Each day's wake: one ready batch wakes one ingest run, however many runs' sensors wait for it.

The ingest DAG's overlapping runs each wait in a sensor whose trigger polls the
same pending work, so a day that becomes ready is seen by all of them at once
(to the second, when its oldest file comes of age). Before it fires, a trigger
takes the day's wake: one conditional write of the day's wake item. Exactly one
of the racing triggers wins and fires; the others keep waiting, and no other run
resumes a worker only to plan nothing. The wake is free again:

- once the woken run's planner has claimed (``release``), ``SETTLE_SECONDS``
  later: the work index is eventually consistent, and until then a trigger could
  still count the files just claimed as pending and wake a run for nothing;
- ``LEASE_SECONDS`` after it was taken, if the woken run never planned (its
  sensor or planner died): another run takes over, so no batch is stranded.

A run that holds a day's wake may take it again (its trigger restarted, or two
copies of it ran): the wake belongs to the DAG run, not to one trigger.

The requests are plain ``update_item`` arguments built from a ``WorkIndex``, so
the same logic drives the triggerer's async client and the sync ledger.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.clock import iso
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.schema import WAKE_SORT_KEY, wake_partition
from ndjson_pipeline.ledger.work import WorkIndex

# Far above the work index's propagation delay (normally under a second), under a sensor poll.
SETTLE_SECONDS = 10
# Longer than a woken run takes to resume its sensor and plan (two task starts and the claims, under a minute on
# a busy environment); a batch whose run died waits this long at most before another run is woken for it.
LEASE_SECONDS = 300
# A wake matters for minutes; its item goes with the day.
KEEP_DAYS = 2

_TAKE = "SET woken_run = :run, woken_at = :now, lease_expires_at = :lease, #ttl = :ttl REMOVE planned_at"
_FREE = "attribute_not_exists(#pk) OR woken_run = :run OR lease_expires_at < :now OR planned_at < :settled"


def _key(index: WorkIndex, day: str) -> dict[str, Any]:
    return encode_item({index.table_partition_key: wake_partition(day), index.table_sort_key: WAKE_SORT_KEY})


def take_request(index: WorkIndex, day: str, run: str, now: datetime) -> dict[str, Any]:
    """The conditional write that gives ``day``'s wake to ``run`` if it is free (a refusal: another run has it)."""
    return {
        "TableName": index.table,
        "Key": _key(index, day),
        "UpdateExpression": _TAKE,
        "ConditionExpression": _FREE,
        "ExpressionAttributeNames": {"#pk": index.table_partition_key, "#ttl": index.ttl_attribute},
        "ExpressionAttributeValues": encode_item(
            {
                ":run": run,
                ":now": iso(now),
                ":lease": iso(now + timedelta(seconds=LEASE_SECONDS)),
                ":settled": iso(now - timedelta(seconds=SETTLE_SECONDS)),
                ":ttl": int((now + timedelta(days=KEEP_DAYS)).timestamp()),
            }
        ),
    }


def release_request(index: WorkIndex, day: str, run: str, now: datetime) -> dict[str, Any]:
    """The conditional write that marks ``day``'s wake planned by ``run`` (refused if another run holds it)."""
    return {
        "TableName": index.table,
        "Key": _key(index, day),
        "UpdateExpression": "SET planned_at = :now",
        "ConditionExpression": "woken_run = :run",
        "ExpressionAttributeValues": encode_item({":run": run, ":now": iso(now)}),
    }


def release(client: Any, index: WorkIndex, day: str, run: str, now: datetime) -> bool:
    """Mark ``day``'s wake planned, if ``run`` holds it; whether it did (a sync client)."""
    try:
        client.update_item(**release_request(index, day, run, now))
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True

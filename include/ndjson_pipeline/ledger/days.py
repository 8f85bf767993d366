"""The open-days registry: every day that has open work, so the sensor and the sweeper never guess days.

A day is open while it has pending files, open manifests or FAILED files whose
alert is still to be published. Each write that creates such work *touches* its
day (``ADD opens 1, SET last_opened_at, REMOVE closing_at``): a registration or
a requeue in the same transaction as its files (``touch_action``), a
compensation before it releases any file (``touch``). A claim only turns
pending files into an open manifest of the same day and touches nothing.
Listing the days is one consistent Query of the registry's partition.

Closing (``close_if_idle``, by the sweeper) must cope with the work index being
eventually consistent: one empty look proves nothing about the last moments'
writes. So a day closes in two passes, each ``QUIET_SECONDS`` (far above the
index's propagation delay) after the previous event:

1. nothing touched the day for ``QUIET_SECONDS`` and the index shows no work:
   every write that created work has reached the index, so the day truly has no
   pending file (the one thing a claim could turn into a manifest the index does
   not show yet); its items are marked ``closing_at``, each on condition that
   ``opens`` did not change since it was read;
2. ``QUIET_SECONDS`` after the last mark, the index still shows no work: no claim
   can have happened since the mark (nothing was pending and nothing touched the
   day), so every manifest that exists is in the index; the items are deleted,
   each on condition that ``opens`` and ``closing_at`` are unchanged.

A touch at any time removes ``closing_at`` and changes ``opens``, so a
registration racing either pass makes that pass's condition refuse and the day
stays open. A day's registry spreads over up to ``pending_shards`` items (the
writer picks one by the identity it registers), so concurrent writers of one
day rarely touch the same item; the day is open while any of them exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ndjson_pipeline.clock import iso
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.schema import alerts_partition, open_manifests_partition, pending_partition
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.work import OpenDaysScan

# Well above the work index's propagation delay (normally under a second); a day closes at least twice this
# long after its last work was created, which costs nothing but a few more sweeps of an empty day.
QUIET_SECONDS = 300

_TOUCH = "SET last_opened_at = :now ADD opens :one REMOVE closing_at"


class DayState(StrEnum):
    OPEN = "OPEN"  # it has work, or had some too recently to tell
    CLOSING = "CLOSING"  # first pass done: still listed, closed by a later pass unless work arrives
    CLOSED = "CLOSED"  # not listed any more


def touch_action(table: LedgerTable, day: str, shard: int, now: datetime) -> dict[str, Any]:
    """The transaction action that marks ``day`` as having new open work."""
    return {
        "TableName": table.name,
        "Key": encode_item(table.schema.open_day_key(day, shard)),
        "UpdateExpression": _TOUCH,
        "ExpressionAttributeValues": encode_item({":now": iso(now), ":one": 1}),
    }


def touch(table: LedgerTable, day: str, shard: int, now: datetime) -> None:
    """Mark ``day`` as having new open work, outside a transaction."""
    action = touch_action(table, day, shard, now)
    table.client.update_item(**action)


def open_days(table: LedgerTable) -> list[str]:
    """Every day with open work (or closing), newest first, from a consistent read of the registry."""
    return _scan(table).days()


def has_open_work(table: LedgerTable, day: str) -> bool:
    """Whether the work index shows any pending file, open manifest or alert still to publish for ``day``."""
    partitions = [pending_partition(day, shard) for shard in range(table.schema.pending_shards)]
    partitions += [open_manifests_partition(day), alerts_partition(day)]
    index = table.work_index
    requests = (index.query(p, page_size=1, attributes=(index.sort_key,)) for p in partitions)
    return any(table.client.query(**request)["Items"] for request in requests)


def close_if_idle(table: LedgerTable, day: str, now: datetime, quiet_seconds: int = QUIET_SECONDS) -> DayState:
    """One closing pass over ``day`` (see the module docstring); what the day is after it.

    A day swept without being listed that has work after all (work recorded
    before the registry existed) is listed from now on.
    """
    items = _scan(table, day).items
    if not items:
        if not has_open_work(table, day):
            return DayState.CLOSED
        touch(table, day, 0, now)
        return DayState.OPEN
    quiet_since = iso(now - timedelta(seconds=quiet_seconds))
    if any(str(item["last_opened_at"]) > quiet_since for item in items if "closing_at" not in item):
        return DayState.OPEN
    if has_open_work(table, day):
        for item in items:
            if "closing_at" in item:
                _reopen(table, item)
        return DayState.OPEN
    marks = [str(item["closing_at"]) for item in items if "closing_at" in item]
    if len(marks) < len(items):
        marked = all(_mark_closing(table, item, iso(now)) for item in items if "closing_at" not in item)
        return DayState.CLOSING if marked else DayState.OPEN
    if max(marks) > quiet_since:
        return DayState.CLOSING
    deleted = all(_delete(table, item) for item in items)
    # A registration may have opened another of the day's items meanwhile.
    return DayState.CLOSED if deleted and not _scan(table, day).items else DayState.OPEN


def _scan(table: LedgerTable, day: str | None = None) -> OpenDaysScan:
    scan = OpenDaysScan(table.work_index, day)
    while (request := scan.next_request()) is not None:
        scan.add_page(table.client.query(**request))
    return scan


def _key(table: LedgerTable, item: dict[str, Any]) -> dict[str, Any]:
    schema = table.schema
    return {schema.partition_key: item[schema.partition_key], schema.sort_key: item[schema.sort_key]}


def _mark_closing(table: LedgerTable, item: dict[str, Any], now: str) -> bool:
    refused = table.conditional_update(
        _key(table, item), "SET closing_at = :now", "opens = :opens", {":now": now, ":opens": item["opens"]}
    )
    return refused is None


def _reopen(table: LedgerTable, item: dict[str, Any]) -> None:
    table.conditional_update(
        _key(table, item), "REMOVE closing_at", "closing_at = :mark", {":mark": item["closing_at"]}
    )


def _delete(table: LedgerTable, item: dict[str, Any]) -> bool:
    try:
        table.client.delete_item(
            TableName=table.name,
            Key=encode_item(_key(table, item)),
            ConditionExpression="opens = :opens AND closing_at = :mark",
            ExpressionAttributeValues=encode_item({":opens": item["opens"], ":mark": item["closing_at"]}),
        )
    except table.client.exceptions.ConditionalCheckFailedException:
        return False
    return True

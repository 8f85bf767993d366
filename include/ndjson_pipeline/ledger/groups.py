"""Groups: the unit pending work is tracked, claimed and finished in.

A registration writes each file version's item once, create-only (the dedup,
``registration``), and one group item per day listing the versions it
registered. From then on a version's life is its group's: the group alone enters
the pending index, a claim takes whole groups (one conditional write each), a
conversion's outcomes are written into the group, a compensation releases or
fails it whole. So a file costs one transactional write of its own item plus its
share of a few writes of its group, instead of a conditional write per file per
step. A version leaves its group only by an operator's requeue or replay
(``transitions.reopen``): it moves to a group of its own, the old group no
longer lists it, and its item names the new one.

Every write of a group rewrites its whole item, on condition that its
``version`` is the one read: a group changes by read, decide, conditional put,
so two writers never both win and a retried step reads what the first did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import GroupGoneError, LedgerError
from ndjson_pipeline.ledger.records import Group, GroupState
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, backoff


def new_group(day: str, files: Iterable[FileVersion], now: datetime) -> Group:
    """A PENDING group of ``files``; its id is derived from them and the moment, so it is new each time."""
    ordered = tuple(sorted(files, key=lambda f: f.identity))
    stamp = iso(now)
    digest = hashlib.blake2b("\n".join([stamp, *(f.identity for f in ordered)]).encode(), digest_size=10).hexdigest()
    return Group(f"{day.replace('-', '')}-{digest}", day, GroupState.PENDING, ordered, stamp, stamp)


def put_action(table: LedgerTable, group: Group) -> dict[str, Any]:
    """The conditional put storing ``group``: create-only for a new group, else only over the version it came from."""
    read = None if group.version == 0 else group.version - 1
    return {"TableName": table.name, "Item": group.item(table.schema), **_unchanged_since(table, read)}


def delete_action(table: LedgerTable, group: Group) -> dict[str, Any]:
    """The conditional delete of a group its last file left (``group`` as read)."""
    key = encode_item(table.schema.group_key(group.group_id))
    return {"TableName": table.name, "Key": key, **_unchanged_since(table, group.version)}


def _unchanged_since(table: LedgerTable, read_version: int | None) -> dict[str, Any]:
    """The condition that no write came between reading ``read_version`` (None: the group is new) and this one."""
    if read_version is None:
        condition = "attribute_not_exists(#pk)"
        return {"ConditionExpression": condition, "ExpressionAttributeNames": table.schema.placeholders(condition)}
    return {"ConditionExpression": "version = :read", "ExpressionAttributeValues": encode_item({":read": read_version})}


def store(table: LedgerTable, group: Group) -> bool:
    """Write ``group`` (see ``put_action``); False when another write changed it since it was read."""
    try:
        table.client.put_item(**put_action(table, group))
    except table.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def update(table: LedgerTable, group: Group, change: Callable[[Group], Group | None]) -> Group | None:
    """Apply ``change`` to ``group`` (as read) and store it; read again and retry when another write came first.

    ``change`` returns the group's next version, None when there is nothing to
    do, or raises when the state it finds forbids the change. Returns what was
    stored, or None when nothing was (the change had been made already).
    """
    for attempt in range(CONFLICT_RETRIES):
        changed = change(group)
        if changed is None:
            return None
        if store(table, changed):
            return changed
        backoff(attempt)
        found = table.group(group.group_id)
        if found is None:
            raise GroupGoneError(f"group {group.group_id} has no ledger record")
        group = found
    raise LedgerError(f"group {group.group_id} kept changing under {CONFLICT_RETRIES} writes")

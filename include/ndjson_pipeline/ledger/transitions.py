"""How a claim ends: completion from the job's results, or compensation; and an operator's requeue.

Every transition is a conditional write on the state it starts from: a
manifest's by its state, a group's by the version read (``groups.update``). A
transition that finds its outcome already recorded (a retried finaliser, a
second compensation) is a no-op; any other refusal raises
``IllegalTransitionError`` naming the state found. Terminal items get the TTL.

A compensation starts with the fence (``fence_manifest``): from then on no
conversion may start or adopt a run of the manifest (``claims.extend_lease`` and
``claims.attach_run`` refuse), and its lease reads as expired, so a compensation
that fails half way is taken up by the sweeper's next pass. A group that becomes
FAILED carries ``alert_pending`` (and an index slot) until its alert is
published (``clear_alert``), so alerting is derived from the ledger, not from
whoever compensated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import JOB_OUTCOMES, FileId, FileState
from ndjson_pipeline.ledger import days, groups
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import GroupGoneError, IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import FileRecord, Group, GroupState, ManifestState
from ndjson_pipeline.ledger.schema import work_sort_key
from ndjson_pipeline.ledger.table import LedgerTable, illegal
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, Stalls, transact_write
from ndjson_pipeline.manifest import FileResult

log = logging.getLogger(__name__)


def complete_manifest(table: LedgerTable, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
    """Record a manifest's outcomes in its groups (files DONE/QUARANTINED with row counts), then close it SUCCEEDED."""
    record = table.require_manifest(manifest_id)
    if record.state is ManifestState.SUCCEEDED:
        return
    if record.state is not ManifestState.CLAIMED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.SUCCEEDED)
    held = table.groups_of(record)
    expected = {identity for g in held for identity in g.identities}
    by_identity = {o.identity: o for o in outcomes}
    if set(by_identity) != expected:
        given = set(by_identity)
        raise LedgerError(
            f"manifest {manifest_id}: outcomes cover {len(given)} files but the manifest holds {len(expected)} "
            f"(missing {sorted(expected - given)[:3]}, unexpected {sorted(given - expected)[:3]})"
        )
    for outcome in outcomes:
        if outcome.outcome not in JOB_OUTCOMES:
            raise IllegalTransitionError(f"file {outcome.identity}", FileState.CLAIMED, outcome.outcome)
    now = utcnow()
    for group in held:
        groups.update(table, group, lambda g: _finished(table, g, manifest_id, by_identity, now))
    _close_manifest(table, manifest_id, ManifestState.SUCCEEDED, now)


def _finished(
    table: LedgerTable, group: Group, manifest_id: str, outcomes: Mapping[str, FileResult], now: datetime
) -> Group | None:
    if group.state is GroupState.FINISHED and group.manifest_id == manifest_id:
        return None  # a retried finaliser
    if group.state is not GroupState.CLAIMED or group.manifest_id != manifest_id:
        raise IllegalTransitionError(f"group {group.group_id}", group.state, GroupState.FINISHED)
    return group.changed(
        now,
        state=GroupState.FINISHED,
        results={identity: outcomes[identity] for identity in group.identities},
        ended_by=manifest_id,
        finished_at=iso(now),
        expires_at=table.expires_at(now),
    )


def restate_files(table: LedgerTable, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
    """A reprocess's new outcomes of files this (SUCCEEDED) manifest made DONE: their row counts replaced.

    Only DONE files of the manifest are restated, and they stay DONE (nothing
    else moves a DONE file; a reprocess never quarantines one whole), so a
    retried swap writes the same values again. When each file was first
    converted (its group's ``finished_at``, the latency) is kept.
    """
    record = table.require_manifest(manifest_id)
    if record.state is not ManifestState.SUCCEEDED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.SUCCEEDED)
    held = table.groups_of(record, all_held=False)
    by_identity = {o.identity: o for o in outcomes}
    unknown = sorted(set(by_identity) - {identity for g in held for identity in g.identities})
    if unknown:
        raise LedgerError(f"manifest {manifest_id} does not hold {unknown[:3]}")
    for outcome in outcomes:
        if outcome.outcome is not FileState.DONE:
            raise IllegalTransitionError(f"file {outcome.identity}", FileState.DONE, outcome.outcome)
    now = utcnow()
    for group in held:
        if any(identity in by_identity for identity in group.identities):
            groups.update(table, group, lambda g: _restated(g, manifest_id, by_identity, now))


def _restated(group: Group, manifest_id: str, outcomes: Mapping[str, FileResult], now: datetime) -> Group | None:
    if group.state is not GroupState.FINISHED or group.manifest_id != manifest_id:
        raise IllegalTransitionError(f"group {group.group_id}", group.state, GroupState.FINISHED)
    results = dict(group.results)
    for identity in group.identities:
        if identity in outcomes:
            if results[identity].outcome is not FileState.DONE:
                raise IllegalTransitionError(f"file {identity}", results[identity].outcome, FileState.DONE)
            results[identity] = outcomes[identity]
    if results == dict(group.results):
        return None
    return group.changed(now, results=results)


def fence_manifest(table: LedgerTable, manifest_id: str, *, lease_expired_at: datetime | None = None) -> bool:
    """Begin compensating a claimed manifest: no run may start or be adopted from now on; False if refused.

    With ``lease_expired_at`` (the sweeper) the fence holds only if the lease
    had run out by then, so a conversion that just extended it keeps its claim.
    An already fenced manifest stays fenced (a compensation taken up again).
    """
    now = iso(utcnow())
    condition = "#state = :claimed"
    values: dict[str, Any] = {
        ":claimed": ManifestState.CLAIMED,
        ":now": now,
        ":wsk": work_sort_key(now, manifest_id),
    }
    if lease_expired_at is not None:
        condition += " AND (attribute_exists(compensating_at) OR lease_expires_at <= :expired)"
        values[":expired"] = iso(lease_expired_at)
    refused = table.conditional_update(
        table.schema.manifest_key(manifest_id),
        "SET compensating_at = if_not_exists(compensating_at, :now), lease_expires_at = :now, #wsk = :wsk",
        condition,
        values,
    )
    if refused == {}:
        raise LedgerError(f"manifest {manifest_id} has no ledger record")
    return refused is None


def compensate_manifest(table: LedgerTable, manifest_id: str, *, max_attempts: int, reason: str) -> list[str]:
    """Return a failed manifest's groups to PENDING, or FAILED once attempts run out; close it COMPENSATED.

    A SUCCEEDED manifest is never reset. The day is touched first, so it stays
    open for the released files. Returns the identities that became FAILED
    (each group marked for its alert).
    """
    record = table.require_manifest(manifest_id)
    if record.state is ManifestState.COMPENSATED:
        return []
    if record.state is not ManifestState.CLAIMED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.COMPENSATED)
    now = utcnow()
    days.touch(table, record.day, table.schema.shard_of(manifest_id), now)
    failed: list[str] = []
    for group in table.groups_of(record):
        released = groups.update(table, group, lambda g: _released(table, g, manifest_id, max_attempts, reason, now))
        if released is not None and released.state is GroupState.FAILED:
            failed += released.identities
    _close_manifest(table, manifest_id, ManifestState.COMPENSATED, now, reason)
    if failed:
        log.error(
            "manifest %s: %d files FAILED after %d attempts: %s",
            manifest_id,
            len(failed),
            max_attempts,
            failed[:5],
            extra={"manifest_id": manifest_id, "day": record.day, "files_failed": len(failed)},
        )
    return sorted(failed)


def _released(
    table: LedgerTable, group: Group, manifest_id: str, max_attempts: int, reason: str, now: datetime
) -> Group | None:
    if group.state is not GroupState.CLAIMED or group.manifest_id != manifest_id:
        return None  # already released by an earlier compensation of this manifest, or finished
    attempts = group.attempts + 1
    failed = attempts >= max_attempts
    return group.changed(
        now,
        state=GroupState.FAILED if failed else GroupState.PENDING,
        manifest_id=None,
        ended_by=manifest_id,
        attempts=attempts,
        reason=reason,
        alert_pending=manifest_id if failed else None,
        expires_at=table.expires_at(now) if failed else None,
    )


def requeue_failed(table: LedgerTable, identity: str) -> None:
    """An operator's decision to try a FAILED file again, with a fresh attempt count; its day opens again."""
    reopen(table, identity, lambda record: record.state is FileState.FAILED)


def reopen(table: LedgerTable, identity: str, allowed: Callable[[FileRecord], bool], *, what: str = "") -> None:
    """A terminal file back to PENDING, in a group of its own with a fresh attempt count, and its day opened again.

    One transaction, on the reads it decided on: the file's item names the new
    group, the old group no longer lists it (or is deleted, if it was the last),
    the new group is created and the day touched, so the file is never pending
    on a day the sweeper and the sensor do not watch, nor in two groups. It is
    refused while the manifest that ended the old group is still open (its
    finaliser or compensation died before closing it, and its retry must find
    the group as it left it). When another write changed the file's item or its
    group between the reads and the transaction (a redo claiming the group, a
    requeue of another of its files), it reads again and decides again: the
    file moves if it still may, and is refused (``IllegalTransitionError``,
    naming the state it is in now) if it may not, never aborted half decided.
    """
    stalls = Stalls()
    while not _reopen_once(table, identity, allowed, what or f"file {identity}"):
        if not stalls.another():
            raise IllegalTransitionError(
                what or f"file {identity}", f"changing under {CONFLICT_RETRIES} concurrent writes", FileState.PENDING
            )


def _reopen_once(table: LedgerTable, identity: str, allowed: Callable[[FileRecord], bool], what: str) -> bool:
    """One read, decision and transaction of ``reopen``: whether it committed (False: another write came first)."""
    file_id = FileId.parse(identity)
    item = table.get(table.schema.file_key(file_id))
    old = table.group(str(item["group_id"])) if item and "group_id" in item else None
    if item is not None and old is None and "group_id" in item:
        again = table.get(table.schema.file_key(file_id))
        if again is not None and again.get("group_id") != item["group_id"]:
            return False  # moved to another group between the two reads
    if item is None or (old is None and "group_id" in item):
        raise LedgerError(f"file {identity} has no ledger record")
    record = FileRecord.from_items(item, old, table.schema.ttl_attribute)
    if old is None or not allowed(record) or old.ended_by is None:
        raise IllegalTransitionError(what, record.state, FileState.PENDING)
    now = utcnow()
    # The new group carries the claims of the old one: a manifest's generation, the sum of its groups' claims, then
    # grows with every claim of the same files however they are grouped, so no two manifests get the same id.
    moved = replace(groups.new_group(record.day, [record.file], now), claims=old.claims)
    rest = [f for f in old.files if f.identity != identity]
    results = {i: r for i, r in old.results.items() if i != identity}
    left = old.changed(now, files=tuple(rest), results=results)
    condition = "group_id = :old"
    pointer = {
        "TableName": table.name,
        "Key": encode_item(table.schema.file_key(file_id)),
        "UpdateExpression": "SET group_id = :new, #ttl = :ttl",
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders("#ttl", condition),
        "ExpressionAttributeValues": encode_item(
            {":new": moved.group_id, ":old": old.group_id, ":ttl": table.expires_at(now)}
        ),
    }
    closed = "attribute_not_exists(#pk) OR #state <> :claimed"
    ended = {
        "TableName": table.name,
        "Key": encode_item(table.schema.manifest_key(old.ended_by)),
        "ConditionExpression": closed,
        "ExpressionAttributeNames": table.schema.placeholders(closed),
        "ExpressionAttributeValues": encode_item({":claimed": ManifestState.CLAIMED}),
    }
    actions: list[dict[str, Any]] = [
        {"Update": pointer},
        {"Delete": groups.delete_action(table, old)} if not rest else {"Put": groups.put_action(table, left)},
        {"Put": groups.put_action(table, moved)},
        {"Update": days.touch_action(table, record.day, table.schema.shard_of(moved.group_id), now)},
        {"ConditionCheck": ended},
    ]
    cancellations = transact_write(table.client, actions)
    if cancellations and cancellations[-1].condition_failed:
        raise IllegalTransitionError(
            what, f"{record.state}, its manifest {old.ended_by} still closing", FileState.PENDING
        )
    return not cancellations


def clear_alert(table: LedgerTable, group: Group, manifest_id: str) -> None:
    """A FAILED group's alert was published: it leaves the alert index (a no-op when already cleared)."""
    now = utcnow()
    # A group gone since it was read had its files requeued or replayed: none of them is FAILED, no alert is left.
    with contextlib.suppress(GroupGoneError):
        groups.update(
            table, group, lambda g: g.changed(now, alert_pending=None) if g.alert_pending == manifest_id else None
        )


def _close_manifest(
    table: LedgerTable, manifest_id: str, state: ManifestState, now: datetime, reason: str | None = None
) -> None:
    update = "SET #state = :to, closed_at = :now, #ttl = :ttl"
    values: dict[str, Any] = {
        ":to": state,
        ":claimed": ManifestState.CLAIMED,
        ":now": iso(now),
        ":ttl": table.expires_at(now),
    }
    if reason:
        update += ", reason = :reason"
        values[":reason"] = reason
    refused = table.conditional_update(
        table.schema.manifest_key(manifest_id), update + " REMOVE #wpk, #wsk", "#state = :claimed", values
    )
    if refused is not None and refused.get("state") != state:
        raise illegal(f"manifest {manifest_id}", refused, state)

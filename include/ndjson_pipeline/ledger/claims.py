"""Claiming pending groups into a manifest, atomically, and the claim's lease.

A manifest is claimed in one transaction: a conditional write of each group it
takes (PENDING -> CLAIMED, on the version read, so a group changed meanwhile is
never shared: it is read again, and left out only if it is no longer free) and
the create-only put of the manifest record naming the groups. Up to 99 groups
go into one manifest, each up to a registration's worth of files, so a manifest
holds as many files as a run should convert without a second transaction: a
claim is whole or absent, and a retried task re-adopts it
(``planning.readopt_manifests``). Concurrent claimers never receive the same
group; a lost race only shrinks the batch. The id is derived from the files the
claim takes and how often they were claimed before.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.ledger import groups
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import Group, GroupState, ManifestState
from ndjson_pipeline.ledger.schema import instant_of, work_sort_key
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import (
    CONFLICT_RETRIES,
    TRANSACTION_LIMIT,
    Stalls,
    request_token,
    transact_write,
)
from ndjson_pipeline.manifest import Manifest, manifest_id_for

log = logging.getLogger(__name__)

# One claim transaction holds the manifest record's put and one write per group.
MAX_GROUPS_PER_MANIFEST = TRANSACTION_LIMIT - 1


def claim_batch(
    table: LedgerTable,
    day: str,
    *,
    max_files: int,
    max_bytes: int,
    lease_seconds: int,
    owner: str = "",
    start_shard: int | None = None,
    batch: Batch | None = None,
) -> Manifest | None:
    """Claim pending groups of a day, up to ``max_files``/``max_bytes``, for one manifest, or None if none is pending.

    The limits count whole groups: the first group is taken whatever its size.
    ``owner`` (the claiming task) lets a retry of that task find the manifests it claimed.
    ``batch``: when the pending groups do not fill a manifest (the end of the pending groups, not a limit, stopped
    the choice), claim them only if they make a batch; else claim nothing and leave them to grow. None: claim
    whatever is pending.
    """
    shard = random.randrange(table.schema.pending_shards) if start_shard is None else start_shard  # noqa: S311
    chosen = _take_candidates(table, day, max_files, max_bytes, shard)
    if batch is not None and not chosen.full and not batch.made_by(chosen):
        return None  # files that can still wait for more: a later claim makes a larger run of them
    return claim_manifest(table, day, chosen.groups, lease_seconds=lease_seconds, owner=owner)


def claim_manifest(
    table: LedgerTable,
    day: str,
    candidates: list[Group],
    *,
    lease_seconds: int,
    owner: str,
    claimable: frozenset[GroupState] = frozenset({GroupState.PENDING}),
    record: dict[str, Any] | None = None,
) -> Manifest | None:
    """Claim ``candidates`` (groups as read, in a ``claimable`` state) into a new manifest of ``day``.

    None when none of them could be had. A group whose write loses its version
    check changed since it was read: it is read again and claimed as it is now
    while it is still free (in a ``claimable`` state, held by no manifest), and
    left out only once another manifest holds it, it ended, or it is gone. A
    FAILED group claimed back (a redo's ``claimable`` includes FAILED) starts a
    fresh attempt count: a redo is an operator's decision to try it again.
    ``record``: more attributes of the manifest record (a redo's link to the manifest it redoes).
    """
    candidates = sorted(candidates, key=lambda g: g.group_id)[:MAX_GROUPS_PER_MANIFEST]
    stalls = Stalls()
    while candidates:
        generation = sum(g.claims for g in candidates)
        files = sorted((f for g in candidates for f in g.files), key=lambda f: f.identity)
        manifest_id = manifest_id_for(day, files, generation)
        now = utcnow()
        lease_expires = now + timedelta(seconds=lease_seconds)
        put = manifest_put(table, manifest_id, day, generation, candidates, lease_expires, now, owner)
        put["Item"].update(encode_item(record or {}))
        claimed = [_claimed(g, manifest_id, now) for g in candidates]
        actions = [{"Put": groups.put_action(table, g)} for g in claimed] + [{"Put": put}]
        cancellations = transact_write(table.client, actions, token=request_token(manifest_id, iso(now)))
        if not cancellations:
            manifest = Manifest(manifest_id, day, tuple(files), generation)
            log.info(
                "claimed %d groups, %d files (%d bytes) of %s into manifest %s",
                len(candidates),
                len(manifest.files),
                manifest.total_bytes,
                day,
                manifest_id,
                extra={
                    "manifest_id": manifest_id,
                    "day": day,
                    "groups": len(candidates),
                    "files": len(manifest.files),
                    "bytes": manifest.total_bytes,
                },
            )
            return manifest
        changed = [g.group_id for g, x in zip(candidates, cancellations, strict=False) if x.condition_failed]
        if not changed and cancellations[-1].condition_failed:
            raise LedgerError(f"manifest record {manifest_id} already exists for a new claim")
        now_read = table.groups(changed)
        free = {g: group for g, group in now_read.items() if group.state in claimable and group.manifest_id is None}
        if len(free) == len(changed) and not stalls.another():
            raise LedgerError(f"claiming pending files of {day} kept conflicting after {CONFLICT_RETRIES} attempts")
        candidates = [free.get(g.group_id, g) for g in candidates if g.group_id not in changed or g.group_id in free]
    return None


def _claimed(group: Group, manifest_id: str, now: datetime) -> Group:
    if group.state not in (GroupState.PENDING, GroupState.FAILED) or group.manifest_id is not None:
        raise IllegalTransitionError(f"group {group.group_id}", group.state, GroupState.CLAIMED)
    fresh = group.state is GroupState.FAILED
    return group.changed(
        now,
        state=GroupState.CLAIMED,
        manifest_id=manifest_id,
        claims=group.claims + 1,
        attempts=0 if fresh else group.attempts,
        reason=None if fresh else group.reason,
        alert_pending=None,
        expires_at=None,
    )


# A claim a conversion may still work on: claimed, and no compensation has begun (``transitions.fence_manifest``).
_OPEN_CLAIM = "#state = :claimed AND attribute_not_exists(compensating_at)"


def extend_lease(table: LedgerTable, manifest_id: str, lease_seconds: int) -> None:
    """Push an open manifest's lease forward while its job is known to be running (refused once fenced)."""
    record = table.require_manifest(manifest_id)
    lease = iso(utcnow() + timedelta(seconds=lease_seconds))
    refused = table.conditional_update(
        table.schema.manifest_key(manifest_id),
        "SET lease_expires_at = :lease, #wsk = :wsk",
        _OPEN_CLAIM,
        {":lease": lease, ":wsk": work_sort_key(lease, manifest_id), ":claimed": ManifestState.CLAIMED},
    )
    if refused is not None:
        current = "COMPENSATING" if refused.get("compensating_at") else refused.get("state", record.state)
        raise IllegalTransitionError(f"manifest {manifest_id}", current, "lease extension")


def attach_run(table: LedgerTable, manifest_id: str, run_id: str) -> bool:
    """Record the run converting an open manifest; False when the manifest was fenced or closed meanwhile."""
    refused = table.conditional_update(
        table.schema.manifest_key(manifest_id),
        "SET run_id = :run",
        _OPEN_CLAIM,
        {":run": run_id, ":claimed": ManifestState.CLAIMED},
    )
    return refused is None


def mark_failure_alerted(table: LedgerTable, manifest_id: str) -> None:
    """Note that the conversion's final failure was alerted, so a callback firing again stays quiet."""
    table.conditional_update(
        table.schema.manifest_key(manifest_id),
        "SET failure_alerted_at = :now",
        "attribute_exists(#pk)",
        {":now": iso(utcnow())},
    )


@dataclass(frozen=True)
class Batch:
    """When pending files that do not fill a manifest are worth a run of their own: ``files`` of them, ``bytes``
    of them, or the oldest registered before ``registered_before`` (``clock.iso``): it has waited long enough."""

    files: int
    bytes: int
    registered_before: str

    def made_by(self, candidates: Candidates) -> bool:
        oldest = candidates.oldest_registered_at
        waited = oldest is not None and oldest < self.registered_before
        return candidates.files >= self.files or candidates.bytes >= self.bytes or waited


@dataclass(frozen=True)
class Candidates:
    """The pending groups a claim would take, read as the index shows them.

    :param groups: the groups, read again (those still pending).
    :param full: whether they fill a manifest (a limit stopped the choice, not the end of the pending groups).
    :param files: their files, as the index counted them.
    :param bytes: their bytes, as the index counted them.
    :param oldest_registered_at: the oldest one's registration (None when there are none).
    """

    groups: list[Group]
    full: bool
    files: int
    bytes: int
    oldest_registered_at: str | None


def _take_candidates(table: LedgerTable, day: str, max_files: int, max_bytes: int, shard: int) -> Candidates:
    """Pending groups of a day, oldest first from ``shard``, until the next would pass a limit."""
    chosen: list[str] = []
    files = total = 0
    full = False
    oldest: str | None = None
    for item in table.pending_items(day, MAX_GROUPS_PER_MANIFEST, shard):
        count, size = int(item["file_count"]), int(item["total_bytes"])
        if chosen and (files + count > max_files or total + size > max_bytes):
            full = True
            break
        chosen.append(str(item["group_id"]))
        registered_at = instant_of(str(item[table.schema.index_sort_key]))
        oldest = registered_at if oldest is None else min(oldest, registered_at)
        files, total = files + count, total + size
        if len(chosen) >= MAX_GROUPS_PER_MANIFEST or files >= max_files or total >= max_bytes:
            full = True
            break
    # The index is eventually consistent: a group it shows may be claimed already.
    found = table.groups(chosen)
    pending = [found[g] for g in chosen if g in found and found[g].state is GroupState.PENDING]
    return Candidates(pending, full, files, total, oldest)


def manifest_put(
    table: LedgerTable,
    manifest_id: str,
    day: str,
    generation: int,
    claimed: list[Group],
    lease_expires: datetime,
    now: datetime,
    owner: str,
) -> dict[str, Any]:
    """The create-only put of a manifest record naming the groups it claims."""
    schema, lease = table.schema, iso(lease_expires)
    condition = "attribute_not_exists(#pk)"
    item = {
        **schema.manifest_key(manifest_id),
        "manifest_id": manifest_id,
        "day": day,
        "state": ManifestState.CLAIMED,
        "groups": {g.group_id for g in claimed},
        "file_count": sum(len(g.files) for g in claimed),
        "total_bytes": sum(g.total_bytes for g in claimed),
        "generation": generation,
        "owner": owner or "-",
        "created_at": iso(now),
        "lease_expires_at": lease,
        **schema.open_manifest_slot(day, manifest_id, lease),
    }
    return {
        "TableName": table.name,
        "Item": encode_item(item),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": schema.placeholders(condition),
    }

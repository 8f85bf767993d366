"""Claiming pending files into a manifest, atomically per file, and the claim's lease.

A manifest of up to ``MAX_FILES_PER_MANIFEST`` files is claimed in as many
transactions as DynamoDB's 100-action limit needs. The first creates the
manifest record with its first 99 files; each later one claims 99 more and adds
them to the record. In every transaction each file's claim is a conditional
PENDING -> CLAIMED update and the record lists exactly the files claimed for it,
so a claimer that dies between two transactions leaves a consistent, smaller
manifest that a retry of the same task re-adopts (``planning.readopt_manifests``).
Concurrent claimers never receive the same file; a lost race only shrinks the
batch. The id is derived from the files the claim set out to take (and how
often they were claimed before): a lost race in a later transaction leaves the
id as it was, since the record, not the id, says which files the manifest holds.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId, FileState, FileVersion
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import ManifestState, file_version_of
from ndjson_pipeline.ledger.schema import work_sort_key
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import (
    CONFLICT_RETRIES,
    TRANSACTION_LIMIT,
    Stalls,
    request_token,
    transact_write,
)
from ndjson_pipeline.manifest import MAX_FILES_PER_MANIFEST, Manifest, manifest_id_for

log = logging.getLogger(__name__)

# Each claim transaction holds the manifest record's action and up to this many files.
FILES_PER_TRANSACTION = TRANSACTION_LIMIT - 1
# The record lists its files' identities; a DynamoDB item holds at most 400 KB.
MAX_MANIFEST_IDENTITY_BYTES = 300_000


def claim_batch(
    table: LedgerTable,
    day: str,
    *,
    max_files: int,
    max_bytes: int,
    lease_seconds: int,
    owner: str = "",
    start_shard: int | None = None,
) -> Manifest | None:
    """Claim up to ``max_files``/``max_bytes`` pending files of a day for one manifest, or None if none is pending.

    ``owner`` (the claiming task) lets a retry of that task find the manifests it claimed.
    """
    shard = random.randrange(table.schema.pending_shards) if start_shard is None else start_shard  # noqa: S311
    items = _take_candidates(table, day, min(max_files, MAX_FILES_PER_MANIFEST), max_bytes, shard)
    candidates = [Claimable(file_version_of(item), claims=int(item.get("claims", 0))) for item in items]
    return claim_manifest(table, day, candidates, lease_seconds=lease_seconds, owner=owner)


@dataclass(frozen=True)
class Claimable:
    """A file a claim may take: PENDING, or FAILED and claimed back by a redo (with a fresh attempt count)."""

    file: FileVersion
    state: FileState = FileState.PENDING
    claims: int = 0  # how often it was claimed before; a manifest's generation sums them

    def update(self, table: LedgerTable, manifest_id: str, lease_expires: datetime, now: datetime) -> dict[str, Any]:
        attempts = 0 if self.state is FileState.FAILED else None
        return claim_update(
            table, self.file.file_id, manifest_id, lease_expires, now, state=self.state, attempts=attempts
        )


def claim_manifest(
    table: LedgerTable,
    day: str,
    candidates: list[Claimable],
    *,
    lease_seconds: int,
    owner: str,
    record: dict[str, Any] | None = None,
) -> Manifest | None:
    """Claim ``candidates`` into a new manifest of ``day``, 99 per transaction; None when none of them could be had.

    ``record``: more attributes of the manifest record (a redo's link to the manifest it redoes).
    """
    candidates = sorted(candidates, key=lambda c: c.file.identity)
    stalls = Stalls()
    while candidates:
        generation = sum(c.claims for c in candidates)
        manifest_id = manifest_id_for(day, [c.file for c in candidates], generation)
        now = utcnow()
        lease_expires = now + timedelta(seconds=lease_seconds)
        first = candidates[:FILES_PER_TRANSACTION]
        put = manifest_put(table, manifest_id, day, generation, [c.file for c in first], lease_expires, now, owner)
        put["Item"].update(encode_item(record or {}))
        actions = [{"Update": c.update(table, manifest_id, lease_expires, now)} for c in first] + [{"Put": put}]
        cancellations = transact_write(table.client, actions, token=request_token(manifest_id, iso(now)))
        if cancellations:
            lost = {c.file.identity for c, x in zip(first, cancellations, strict=False) if x.condition_failed}
            if not lost and cancellations[-1].condition_failed:
                raise LedgerError(f"manifest record {manifest_id} already exists for a new claim")
            if not lost and not stalls.another():
                raise LedgerError(f"claiming pending files of {day} kept conflicting after {CONFLICT_RETRIES} attempts")
            candidates = [c for c in candidates if c.file.identity not in lost]
            continue
        claimed = [c.file for c in first]
        claimed += _claim_more(table, manifest_id, candidates[FILES_PER_TRANSACTION:], lease_expires, now)
        manifest = Manifest(manifest_id, day, tuple(sorted(claimed, key=lambda f: f.identity)), generation)
        log.info(
            "claimed %d files (%d bytes) of %s into manifest %s",
            len(manifest.files),
            manifest.total_bytes,
            day,
            manifest.manifest_id,
        )
        return manifest
    return None


def _claim_more(
    table: LedgerTable, manifest_id: str, rest: list[Claimable], lease_expires: datetime, now: datetime
) -> list[FileVersion]:
    """Claim ``rest`` into an existing manifest, 99 per transaction; the files claimed.

    Stops early, keeping what it has, if the manifest was fenced meanwhile.
    """
    claimed: list[FileVersion] = []
    for start in range(0, len(rest), FILES_PER_TRANSACTION):
        todo = rest[start : start + FILES_PER_TRANSACTION]
        stalls = Stalls()
        while todo:
            files = [c.file for c in todo]
            actions = [{"Update": c.update(table, manifest_id, lease_expires, now)} for c in todo]
            actions.append({"Update": _manifest_add(table, manifest_id, files)})
            token = request_token(manifest_id, iso(now), *(f.identity for f in files))
            cancellations = transact_write(table.client, actions, token=token)
            if not cancellations:
                claimed += files
                break
            if cancellations[-1].condition_failed:
                log.warning(
                    "manifest %s was fenced while it was being claimed: it keeps %d files", manifest_id, len(claimed)
                )
                return claimed
            lost = {c.file.identity for c, x in zip(todo, cancellations, strict=False) if x.condition_failed}
            if not lost and not stalls.another():
                raise LedgerError(
                    f"claiming more files into {manifest_id} kept conflicting after {CONFLICT_RETRIES} attempts"
                )
            todo = [c for c in todo if c.file.identity not in lost]
    return claimed


def _manifest_add(table: LedgerTable, manifest_id: str, files: list[FileVersion]) -> dict[str, Any]:
    """The action adding claimed files to an open manifest's record (refused once the manifest is fenced)."""
    update = "ADD files :ids, file_count :n, total_bytes :b"
    return {
        "TableName": table.name,
        "Key": encode_item(table.schema.manifest_key(manifest_id)),
        "UpdateExpression": update,
        "ConditionExpression": _OPEN_CLAIM,
        "ExpressionAttributeNames": table.schema.placeholders(update, _OPEN_CLAIM),
        "ExpressionAttributeValues": encode_item(
            {
                ":ids": {f.identity for f in files},
                ":n": len(files),
                ":b": sum(f.size for f in files),
                ":claimed": ManifestState.CLAIMED,
            }
        ),
    }


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


def _take_candidates(table: LedgerTable, day: str, max_files: int, max_bytes: int, shard: int) -> list[dict[str, Any]]:
    taken: list[dict[str, Any]] = []
    total = identity_bytes = 0
    for item in table.pending_items(day, max_files, shard):
        identity = file_version_of(item).identity
        if taken and (
            total + int(item["size"]) > max_bytes
            or identity_bytes + len(identity.encode()) > MAX_MANIFEST_IDENTITY_BYTES
        ):
            break
        taken.append(item)
        total += int(item["size"])
        identity_bytes += len(identity.encode())
        if len(taken) >= max_files:
            break
    return taken


def claim_update(
    table: LedgerTable,
    file_id: FileId,
    manifest_id: str,
    lease_expires: datetime,
    now: datetime,
    *,
    state: FileState = FileState.PENDING,
    attempts: int | None = None,
) -> dict[str, Any]:
    """The transaction action that claims one file in ``state``, held by no manifest, for ``manifest_id``.

    A claim from PENDING keeps the attempt count; a redo's claim of a FAILED file
    gives ``attempts`` (a fresh count) and drops what FAILED left on the item.
    """
    update = "SET #state = :claimed, manifest_id = :m, lease_expires_at = :lease, updated_at = :now"
    values: dict[str, Any] = {
        ":claimed": FileState.CLAIMED,
        ":from": state,
        ":m": manifest_id,
        ":lease": iso(lease_expires),
        ":now": iso(now),
        ":one": 1,
    }
    if attempts is not None:
        update += ", attempts = :attempts"
        values[":attempts"] = attempts
    update += " ADD claims :one REMOVE #wpk, #wsk" + (
        "" if state is FileState.PENDING else ", #ttl, reason, alert_pending"
    )
    condition = "#state = :from AND attribute_not_exists(manifest_id)"
    return {
        "TableName": table.name,
        "Key": encode_item(table.schema.file_key(file_id)),
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders(update, condition),
        "ExpressionAttributeValues": encode_item(values),
    }


def manifest_put(
    table: LedgerTable,
    manifest_id: str,
    day: str,
    generation: int,
    files: list[FileVersion],
    lease_expires: datetime,
    now: datetime,
    owner: str,
) -> dict[str, Any]:
    """The create-only put of a manifest record holding its first claimed ``files``."""
    schema, lease = table.schema, iso(lease_expires)
    condition = "attribute_not_exists(#pk)"
    item = {
        **schema.manifest_key(manifest_id),
        "manifest_id": manifest_id,
        "day": day,
        "state": ManifestState.CLAIMED,
        "files": {f.identity for f in files},
        "file_count": len(files),
        "total_bytes": sum(f.size for f in files),
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

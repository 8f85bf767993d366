"""Claiming pending files into a manifest, atomically, and the claim's lease.

A claim is one transaction: a conditional PENDING -> CLAIMED update per file and
a create-only manifest record. Concurrent claimers never receive the same file;
a lost race only shrinks the batch.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import ManifestState, file_version_of
from ndjson_pipeline.ledger.schema import work_sort_key
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import (
    CONFLICT_RETRIES,
    TRANSACTION_LIMIT,
    backoff,
    request_token,
    transact_write,
)
from ndjson_pipeline.manifest import Manifest

log = logging.getLogger(__name__)

# A claim writes its files and the manifest record in one transaction.
MAX_FILES_PER_CLAIM = TRANSACTION_LIMIT - 1


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

    The manifest id derives from the claimed files (and how often they were
    claimed before), so a retried transaction keeps its id. ``owner`` (the
    claiming task) lets a retry of that task find the manifests it claimed.
    """
    max_files = min(max_files, MAX_FILES_PER_CLAIM)
    shard = random.randrange(table.schema.pending_shards) if start_shard is None else start_shard  # noqa: S311
    candidates = _take_candidates(table, day, max_files, max_bytes, shard)
    for attempt in range(CONFLICT_RETRIES):
        if not candidates:
            return None
        generation = sum(int(item.get("claims", 0)) for item in candidates)
        manifest = Manifest.for_files(day, [file_version_of(item) for item in candidates], generation)
        now = utcnow()
        lease_expires = now + timedelta(seconds=lease_seconds)
        actions = [
            {"Update": claim_update(table, f.file_id, manifest.manifest_id, lease_expires, now)} for f in manifest.files
        ]
        actions.append({"Put": manifest_put(table, manifest, lease_expires, now, owner)})
        cancellations = transact_write(table.client, actions, token=request_token(manifest.manifest_id, iso(now)))
        if cancellations:
            lost = {f.identity for f, c in zip(manifest.files, cancellations, strict=False) if c.condition_failed}
            if not lost and cancellations[-1].condition_failed:
                raise LedgerError(f"manifest record {manifest.manifest_id} already exists for a new claim")
            if not lost:
                backoff(attempt)
            candidates = [item for item in candidates if file_version_of(item).identity not in lost]
            continue
        log.info(
            "claimed %d files (%d bytes) of %s into manifest %s",
            len(manifest.files),
            manifest.total_bytes,
            day,
            manifest.manifest_id,
        )
        return manifest
    raise LedgerError(f"claiming pending files of {day} kept conflicting after {CONFLICT_RETRIES} attempts")


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
    total = 0
    for item in table.pending_items(day, max_files, shard):
        if taken and total + int(item["size"]) > max_bytes:
            break
        taken.append(item)
        total += int(item["size"])
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
    table: LedgerTable, manifest: Manifest, lease_expires: datetime, now: datetime, owner: str
) -> dict[str, Any]:
    schema, lease = table.schema, iso(lease_expires)
    condition = "attribute_not_exists(#pk)"
    item = {
        **schema.manifest_key(manifest.manifest_id),
        "manifest_id": manifest.manifest_id,
        "day": manifest.day,
        "state": ManifestState.CLAIMED,
        "files": {f.identity for f in manifest.files},
        "file_count": len(manifest.files),
        "total_bytes": manifest.total_bytes,
        "generation": manifest.generation,
        "owner": owner or "-",
        "created_at": iso(now),
        "lease_expires_at": lease,
        **schema.open_manifest_slot(manifest.day, manifest.manifest_id, lease),
    }
    return {
        "TableName": table.name,
        "Item": encode_item(item),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": schema.placeholders(condition),
    }

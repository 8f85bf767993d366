"""Registering file versions: idempotent, and an older version of a key never becomes current.

Each version is a create-only put; a version already present is left untouched.
A version that arrives with an S3 sequencer also moves its key's head item
forward, conditionally: a version whose sequencer is older than the head's is
recorded QUARANTINED as superseded instead of PENDING.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.ledger.codec import TypedItem, encode_item
from ndjson_pipeline.ledger.errors import LedgerError
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, backoff, chunks_by_cost, transact_write

SEQUENCER_WIDTH = 32


@dataclass(frozen=True)
class Registration:
    """A file version seen by intake or reconcile, with its validation outcome."""

    file: FileVersion
    day: str
    event_time: str
    sequencer: str | None = None
    rejection: str | None = None


@dataclass
class RegisterOutcome:
    registered: list[str] = field(default_factory=list)
    already_known: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def stored(self) -> set[str]:
        """Identities whose record is now durable, whatever the outcome."""
        return {*self.registered, *self.already_known, *self.superseded, *self.quarantined}


def pad_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings of equal length (left-padded with zeros)."""
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


def register(table: LedgerTable, registrations: Iterable[Registration]) -> RegisterOutcome:
    """Record file versions idempotently, in as few transactions as the 100-action limit allows."""
    outcome = RegisterOutcome()
    by_identity: dict[str, Registration] = {}
    for reg in registrations:
        if reg.file.identity in by_identity:
            outcome.already_known.append(reg.file.identity)  # a duplicate event within this batch
        else:
            by_identity[reg.file.identity] = reg
    if not by_identity:
        return outcome
    todo = list(by_identity.values())
    superseded = _supersede_within_batch(todo)
    # Lazily costed: a chunk's transaction can find heads stale, which drops later head updates.
    for chunk in chunks_by_cost(todo, lambda r: 2 if _updates_head(r, superseded) else 1):
        _register_chunk(table, chunk, superseded, outcome)
    return outcome


def file_item(table: LedgerTable, reg: Registration, now: datetime, superseded: str | None = None) -> TypedItem:
    """The item a registration creates: PENDING and findable as work, or QUARANTINED with its reason."""
    schema, f, stamp = table.schema, reg.file, iso(now)
    item: dict[str, Any] = {
        **schema.file_key(f.file_id),
        "bucket": f.bucket,
        "key": f.key,
        "etag": f.etag,
        "size": f.size,
        "version_id": f.version_id,
        "day": reg.day,
        "event_time": reg.event_time,
        "registered_at": stamp,
        "updated_at": stamp,
        "attempts": 0,
        "sequencer": pad_sequencer(reg.sequencer) if reg.sequencer else None,
    }
    reason = reg.rejection or superseded
    if reason:
        item.update({"state": FileState.QUARANTINED, "reason": reason, schema.ttl_attribute: table.expires_at(now)})
    else:
        item.update({"state": FileState.PENDING, **schema.pending_slot(reg.day, f.identity, stamp)})
    return encode_item(item)


def _supersede_within_batch(regs: list[Registration]) -> dict[str, str]:
    """Versions of one key in one batch: only the newest by sequencer may update the key's head."""
    newest: dict[tuple[str, str], Registration] = {}
    for reg in regs:
        if reg.sequencer is None or reg.rejection:
            continue
        slot = (reg.file.bucket, reg.file.key)
        if slot not in newest or pad_sequencer(reg.sequencer) > pad_sequencer(newest[slot].sequencer or ""):
            newest[slot] = reg
    superseded = {}
    for reg in regs:
        slot = (reg.file.bucket, reg.file.key)
        if reg.sequencer is not None and not reg.rejection and newest[slot] is not reg:
            superseded[reg.file.identity] = (
                f"superseded: a newer version (eTag {newest[slot].file.etag}) of the key arrived"
            )
    return superseded


def _updates_head(reg: Registration, superseded: dict[str, str]) -> bool:
    return reg.sequencer is not None and not reg.rejection and reg.file.identity not in superseded


def _register_chunk(
    table: LedgerTable, chunk: list[Registration], superseded: dict[str, str], outcome: RegisterOutcome
) -> None:
    todo = list(chunk)
    for attempt in range(CONFLICT_RETRIES):
        now = utcnow()
        actions: list[dict[str, Any]] = []
        owners: list[tuple[str, str]] = []  # (identity, "item" | "head") per action
        for reg in todo:
            identity = reg.file.identity
            actions.append({"Put": _put(table, reg, superseded.get(identity), now)})
            owners.append((identity, "item"))
            if _updates_head(reg, superseded):
                actions.append({"Update": _head_update(table, reg, now)})
                owners.append((identity, "head"))
        cancellations = transact_write(table.client, actions)
        if not cancellations:
            for reg in todo:
                identity = reg.file.identity
                if reg.rejection:
                    outcome.quarantined.append(identity)
                elif identity in superseded:
                    outcome.superseded.append(identity)
                else:
                    outcome.registered.append(identity)
            return
        known, stale, retry = set(), {}, False
        for (identity, part), cancellation in zip(owners, cancellations, strict=True):
            if cancellation.condition_failed and part == "item":
                known.add(identity)
            elif cancellation.condition_failed and part == "head":
                newer = cancellation.item.get("latest_etag")
                stale[identity] = f"superseded: a newer version (eTag {newer}) of the key was recorded"
            elif cancellation.at_fault:
                retry = True
        outcome.already_known.extend(sorted(known))
        superseded.update(stale)
        todo = [r for r in todo if r.file.identity not in known]
        if not known and not stale and retry:
            backoff(attempt)
        if not todo:
            return
    raise LedgerError(
        f"registering {len(todo)} file versions kept conflicting after {CONFLICT_RETRIES} attempts "
        f"(first: {todo[0].file.uri})"
    )


def _put(table: LedgerTable, reg: Registration, superseded: str | None, now: datetime) -> dict[str, Any]:
    condition = "attribute_not_exists(#pk)"
    return {
        "TableName": table.name,
        "Item": file_item(table, reg, now, superseded),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders(condition),
    }


def _head_update(table: LedgerTable, reg: Registration, now: datetime) -> dict[str, Any]:
    update = "SET latest_sequencer = :seq, latest_etag = :etag, #ttl = :ttl"
    condition = "attribute_not_exists(latest_sequencer) OR latest_sequencer < :seq"
    return {
        "TableName": table.name,
        "Key": encode_item(table.schema.head_key(reg.file.bucket, reg.file.key)),
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders(update, condition),
        "ExpressionAttributeValues": encode_item(
            {":seq": pad_sequencer(reg.sequencer or ""), ":etag": reg.file.etag, ":ttl": table.expires_at(now)}
        ),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }

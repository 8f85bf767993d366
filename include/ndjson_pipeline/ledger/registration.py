"""Registering file versions: idempotent, and an older version of a key never becomes current.

Each version is a create-only put; a version already present is left untouched.
A version that arrives with an S3 sequencer also moves its key's head item
forward, conditionally: a version whose sequencer is older than the head's is
recorded QUARANTINED as superseded instead of PENDING. The transaction that
records PENDING versions also opens their days in the registry (``days``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.ledger import days
from ndjson_pipeline.ledger.codec import TypedItem, encode_item
from ndjson_pipeline.ledger.errors import LedgerError
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, TRANSACTION_LIMIT, backoff, transact_write

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

    def add(self, other: RegisterOutcome) -> None:
        for name in ("registered", "already_known", "superseded", "quarantined"):
            getattr(self, name).extend(getattr(other, name))


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
    for chunk in _chunks(todo, superseded):
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
    return reg.sequencer is not None and _opens_work(reg, superseded)


def _opens_work(reg: Registration, superseded: dict[str, str]) -> bool:
    """Whether the registration records a PENDING version (one its day must be open for)."""
    return not reg.rejection and reg.file.identity not in superseded


def _chunks(regs: list[Registration], superseded: dict[str, str]) -> Iterator[list[Registration]]:
    """Consecutive registrations whose actions (item, head update, one touch per day) fit one transaction.

    Costed lazily: a chunk's transaction can find heads stale, which only drops later actions.
    """
    chunk: list[Registration] = []
    opened: set[str] = set()
    used = 0
    for reg in regs:
        if chunk and used + _cost(reg, superseded, opened) > TRANSACTION_LIMIT:
            yield chunk
            chunk, opened, used = [], set(), 0
        used += _cost(reg, superseded, opened)
        chunk.append(reg)
        if _opens_work(reg, superseded):
            opened.add(reg.day)
    if chunk:
        yield chunk


def _cost(reg: Registration, superseded: dict[str, str], opened: set[str]) -> int:
    touches_day = _opens_work(reg, superseded) and reg.day not in opened
    return 1 + _updates_head(reg, superseded) + touches_day


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
        for day, first in _days_opened(todo, superseded).items():
            actions.append({"Update": days.touch_action(table, day, table.schema.shard_of(first), now)})
            owners.append((first, "day"))
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


def _days_opened(regs: list[Registration], superseded: dict[str, str]) -> dict[str, str]:
    """The days the registrations open, each with the first identity opening it (which picks the registry item)."""
    opened: dict[str, str] = {}
    for reg in regs:
        if _opens_work(reg, superseded):
            opened.setdefault(reg.day, reg.file.identity)
    return opened


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

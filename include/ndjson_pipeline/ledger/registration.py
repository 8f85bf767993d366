"""Registering file versions: idempotent, one create-only put per version, one group per day.

A version already present is left untouched. The versions of one day a
transaction registers form a group (``groups``): its item lists them and alone
enters the pending index. Which version of a key is current
is not decided here: the job reads a version with If-Match on its eTag, so a
version S3 no longer holds (overwritten or deleted, whatever order the events
came in) is QUARANTINED as superseded when its manifest converts. That check
is S3's own answer, and a key head item here would cost two write units a
file for the rare overwritten key. The transaction that records PENDING
versions also opens their days in the registry (``days``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.ledger import days, groups
from ndjson_pipeline.ledger.codec import TypedItem, encode_item
from ndjson_pipeline.ledger.errors import LedgerError
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, TRANSACTION_LIMIT, Stalls, transact_write

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
    quarantined: list[str] = field(default_factory=list)

    def stored(self) -> set[str]:
        """Identities whose record is now durable, whatever the outcome."""
        return {*self.registered, *self.already_known, *self.quarantined}

    def add(self, other: RegisterOutcome) -> None:
        for name in ("registered", "already_known", "quarantined"):
            getattr(self, name).extend(getattr(other, name))


def pad_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings of equal length (left-padded with zeros)."""
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


@dataclass(frozen=True)
class GroupLimits:
    """How large a group may grow: a claim takes whole groups, so no group may exceed what a manifest holds."""

    max_files: int = TRANSACTION_LIMIT
    max_bytes: int | None = None

    def split(self, regs: Iterable[Registration]) -> dict[str, list[list[Registration]]]:
        """PENDING registrations by day, each day's cut into groups in order (a file over ``max_bytes``: alone)."""
        by_day: dict[str, list[list[Registration]]] = {}
        for reg in regs:
            if reg.rejection:
                continue
            groups_of_day = by_day.setdefault(reg.day, [[]])
            current = groups_of_day[-1]
            size = sum(r.file.size for r in current) + reg.file.size
            if current and (len(current) >= self.max_files or (self.max_bytes is not None and size > self.max_bytes)):
                groups_of_day.append(current := [])
            current.append(reg)
        return by_day


# Groups only as large as a transaction makes them (tests and tools; the steps pass the settings' limits).
UNLIMITED = GroupLimits()


def register(
    table: LedgerTable, registrations: Iterable[Registration], limits: GroupLimits = UNLIMITED
) -> RegisterOutcome:
    """Record file versions idempotently, in as few transactions as the 100-action limit allows."""
    outcome = RegisterOutcome()
    by_identity: dict[str, Registration] = {}
    for reg in registrations:
        if reg.file.identity in by_identity:
            outcome.already_known.append(reg.file.identity)  # a duplicate event within this batch
        else:
            by_identity[reg.file.identity] = reg
    for chunk in _chunks(list(by_identity.values()), limits):
        _register_chunk(table, chunk, limits, outcome)
    return outcome


def file_item(table: LedgerTable, reg: Registration, now: datetime, group_id: str | None) -> TypedItem:
    """The item a registration creates: a member of ``group_id``, or QUARANTINED with its reason.

    A version's item is written once; it expires ``terminal_ttl_days`` after
    registration (its group keeps the outcome as long after the group ends).
    """
    schema, f = table.schema, reg.file
    item: dict[str, Any] = {
        **schema.file_key(f.file_id),
        "bucket": f.bucket,
        "key": f.key,
        "etag": f.etag,
        "size": f.size,
        "version_id": f.version_id,
        "day": reg.day,
        "event_time": reg.event_time,
        "registered_at": iso(now),
        "sequencer": pad_sequencer(reg.sequencer) if reg.sequencer else None,
        "group_id": group_id,
        schema.ttl_attribute: table.expires_at(now),
    }
    if reg.rejection:
        item.update({"state": FileState.QUARANTINED, "reason": reg.rejection})
    return encode_item(item)


def _actions(regs: list[Registration], limits: GroupLimits) -> int:
    """Transaction actions registering ``regs``: a put each, a put per group, a touch per day."""
    by_day = limits.split(regs)
    return len(regs) + sum(len(groups_of_day) + 1 for groups_of_day in by_day.values())


def _chunks(regs: list[Registration], limits: GroupLimits) -> Iterator[list[Registration]]:
    """Consecutive registrations whose actions fit one transaction."""
    chunk: list[Registration] = []
    for reg in regs:
        if chunk and _actions([*chunk, reg], limits) > TRANSACTION_LIMIT:
            yield chunk
            chunk = []
        chunk.append(reg)
    if chunk:
        yield chunk


def _register_chunk(
    table: LedgerTable, chunk: list[Registration], limits: GroupLimits, outcome: RegisterOutcome
) -> None:
    todo = list(chunk)
    stalls = Stalls()
    while todo:
        now = utcnow()
        group_of: dict[str, str] = {}
        group_actions: list[dict[str, Any]] = []
        for day, groups_of_day in sorted(limits.split(todo).items()):
            for members in groups_of_day:
                group = groups.new_group(day, [reg.file for reg in members], now)
                group_of.update((reg.file.identity, group.group_id) for reg in members)
                group_actions.append({"Put": groups.put_action(table, group)})
            touch = days.touch_action(table, day, table.schema.shard_of(group.group_id), now)
            group_actions.append({"Update": touch})
        actions = [{"Put": _put(table, reg, now, group_of.get(reg.file.identity))} for reg in todo]
        actions += group_actions
        cancellations = transact_write(table.client, actions)
        if not cancellations:
            for reg in todo:
                (outcome.quarantined if reg.rejection else outcome.registered).append(reg.file.identity)
            return
        puts = cancellations[: len(todo)]
        known = {reg.file.identity for reg, c in zip(todo, puts, strict=True) if c.condition_failed}
        outcome.already_known.extend(sorted(known))
        if not known and not stalls.another():  # a conflict or throttling, not a version already recorded
            raise LedgerError(
                f"registering {len(todo)} file versions kept conflicting after {CONFLICT_RETRIES} attempts "
                f"(first: {todo[0].file.uri})"
            )
        todo = [reg for reg in todo if reg.file.identity not in known]


def _put(table: LedgerTable, reg: Registration, now: datetime, group_id: str | None) -> dict[str, Any]:
    condition = "attribute_not_exists(#pk)"
    return {
        "TableName": table.name,
        "Item": file_item(table, reg, now, group_id),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders(condition),
    }

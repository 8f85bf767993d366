"""Redoing a compensated manifest: its files that nobody else holds, claimed back into one successor manifest.

What an operator's clear of a failed conversion asks for. The successor is an
ordinary manifest (a new claim generation, the same owner) whose record names
the manifest it redoes (``redo_of``); the compensated manifest's record links to
it (``redone_as``). It is claimed as any manifest is (``claims.claim_manifest``):
one transaction of conditional writes, and a group another manifest took
meanwhile fails its condition and is left to that manifest, so no file version
is ever claimed by two manifests. The link is written after the claim; a redo
that died in between is found again from the groups' own manifest ids, so a
manifest never gets two successors one after the other.
"""

from __future__ import annotations

import logging

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import claims, days
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import Group, GroupState, ManifestRecord, ManifestState
from ndjson_pipeline.ledger.table import LedgerTable

log = logging.getLogger(__name__)

REDO_OF = "redo_of"
REDONE_AS = "redone_as"
# A group in one of these states (so in no other manifest) can be claimed back by a redo.
RECLAIMABLE = frozenset({GroupState.PENDING, GroupState.FAILED})


def successor_of(table: LedgerTable, manifest_id: str) -> str | None:
    """The manifest that redoes ``manifest_id``, if a redo linked one."""
    item = table.get(table.schema.manifest_key(manifest_id))
    return None if item is None or REDONE_AS not in item else str(item[REDONE_AS])


def redo_compensated(table: LedgerTable, manifest_id: str, *, lease_seconds: int) -> str | None:
    """Claim the reclaimable files of compensated ``manifest_id`` into its successor; its id, or None if none is left.

    FAILED files claimed back start a fresh attempt count (the clear is an
    operator's decision to try them again, as a requeue is).
    """
    record = _compensated(table, manifest_id)
    if (linked := successor_of(table, manifest_id)) is not None:
        return linked
    held = table.groups_of(record, all_held=False)
    adopted = _successor_holding(table, manifest_id, held)
    if adopted is not None:
        _link(table, manifest_id, adopted)
        return adopted
    candidates = [g for g in held if g.state in RECLAIMABLE]
    # FAILED files may be all a day had left, and the day may have closed: it opens again before its new manifest
    # exists, so the sweeper watches the day whatever happens to this redo (a touch alone costs nothing).
    if candidates:
        days.touch(table, record.day, table.schema.shard_of(manifest_id), utcnow())
    successor = claims.claim_manifest(
        table,
        record.day,
        candidates,
        lease_seconds=lease_seconds,
        owner=record.owner,
        claimable=RECLAIMABLE,
        record={REDO_OF: manifest_id},
    )
    if successor is None:
        # Every file was taken meanwhile: by another redo of this manifest (adopt it), or by other manifests.
        if (adopted := _successor_holding(table, manifest_id, table.groups_of(record, all_held=False))) is not None:
            _link(table, manifest_id, adopted)
            return adopted
        log.info(
            "manifest %s: no file is left to redo (all finished or held by other manifests)",
            manifest_id,
            extra={"manifest_id": manifest_id, "day": record.day},
        )
        return None
    _link(table, manifest_id, successor.manifest_id)
    log.info(
        "manifest %s redone as %s: %d of its %d files claimed back",
        manifest_id,
        successor.manifest_id,
        len(successor.files),
        record.file_count,
        extra={
            "manifest_id": manifest_id,
            "day": record.day,
            "redo_manifest_id": successor.manifest_id,
            "files": len(successor.files),
        },
    )
    return successor.manifest_id


def _compensated(table: LedgerTable, manifest_id: str) -> ManifestRecord:
    record = table.require_manifest(manifest_id)
    if record.state is not ManifestState.COMPENSATED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, "redo")
    return record


def _successor_holding(table: LedgerTable, manifest_id: str, held: list[Group]) -> str | None:
    """A manifest redoing ``manifest_id`` that holds some of its groups (a redo that died before linking)."""
    for holder in sorted({g.manifest_id for g in held if g.manifest_id and g.manifest_id != manifest_id}):
        item = table.get(table.schema.manifest_key(holder))
        if item is not None and item.get(REDO_OF) == manifest_id:
            return holder
    return None


def _link(table: LedgerTable, manifest_id: str, successor: str) -> None:
    refused = table.conditional_update(
        table.schema.manifest_key(manifest_id),
        f"SET {REDONE_AS} = :s",
        f"#state = :compensated AND (attribute_not_exists({REDONE_AS}) OR {REDONE_AS} = :s)",
        {":s": successor, ":compensated": ManifestState.COMPENSATED},
    )
    if refused is not None:
        raise LedgerError(
            f"manifest {manifest_id} is already redone as {refused.get(REDONE_AS)}, not {successor} "
            "(two redos raced; the files are each claimed by one of them)"
        )

"""How a claim ends: completion from the job's results, or compensation; and an operator's requeue.

Every transition is a conditional update on the state it starts from. A
transition that finds its outcome already recorded (a retried finaliser, a
second compensation) is a no-op; any other refusal raises
``IllegalTransitionError`` naming the state found. Terminal items get the TTL.

A compensation starts with the fence (``fence_manifest``): from then on no
conversion may start or adopt a run of the manifest (``claims.extend_lease`` and
``claims.attach_run`` refuse), and its lease reads as expired, so a compensation
that fails half way is taken up by the sweeper's next pass. A file that becomes
FAILED carries ``alert_pending`` (and an index slot) until its alert is
published (``clear_alert``), so alerting is derived from the ledger, not from
whoever compensated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import JOB_OUTCOMES, FileId, FileState
from ndjson_pipeline.ledger import days
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.records import ManifestState
from ndjson_pipeline.ledger.schema import work_sort_key
from ndjson_pipeline.ledger.table import LedgerTable, illegal
from ndjson_pipeline.ledger.transactions import CONFLICT_RETRIES, TRANSACTION_LIMIT, Stalls, transact_write
from ndjson_pipeline.manifest import FileResult

log = logging.getLogger(__name__)

_BY_MANIFEST = "#state = :from AND manifest_id = :m"


def complete_manifest(table: LedgerTable, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
    """Move a manifest's files to DONE/QUARANTINED with their row counts, then close it SUCCEEDED."""
    record = table.require_manifest(manifest_id)
    if record.state is ManifestState.SUCCEEDED:
        return
    if record.state is not ManifestState.CLAIMED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.SUCCEEDED)
    expected = set(record.files)
    given = {o.identity for o in outcomes}
    if given != expected:
        raise LedgerError(
            f"manifest {manifest_id}: outcomes cover {len(given)} files but the manifest holds {len(expected)} "
            f"(missing {sorted(expected - given)[:3]}, unexpected {sorted(given - expected)[:3]})"
        )
    now = utcnow()
    ordered = sorted(outcomes, key=lambda o: o.identity)
    for start in range(0, len(ordered), TRANSACTION_LIMIT):
        _finish_files(table, manifest_id, ordered[start : start + TRANSACTION_LIMIT], now, FileState.CLAIMED)
    _close_manifest(table, manifest_id, ManifestState.SUCCEEDED, now)


def restate_files(table: LedgerTable, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
    """A reprocess's new outcomes of files this (SUCCEEDED) manifest made DONE: their row counts replaced.

    Only DONE files of the manifest are restated, and they stay DONE (nothing
    else moves a DONE file; a reprocess never quarantines one whole), so a
    retried swap writes the same values again.
    """
    record = table.require_manifest(manifest_id)
    if record.state is not ManifestState.SUCCEEDED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.SUCCEEDED)
    unknown = sorted({o.identity for o in outcomes} - set(record.files))
    if unknown:
        raise LedgerError(f"manifest {manifest_id} does not hold {unknown[:3]}")
    for outcome in outcomes:
        if outcome.outcome is not FileState.DONE:
            raise IllegalTransitionError(f"file {outcome.identity}", FileState.DONE, outcome.outcome)
    now = utcnow()
    ordered = sorted(outcomes, key=lambda o: o.identity)
    for start in range(0, len(ordered), TRANSACTION_LIMIT):
        _finish_files(table, manifest_id, ordered[start : start + TRANSACTION_LIMIT], now, FileState.DONE)


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
    """Return a failed manifest's files to PENDING, or FAILED once attempts run out; close it COMPENSATED.

    A SUCCEEDED manifest is never reset. The day is touched first, so it stays
    open for the released files. Returns the identities that became FAILED
    (each marked for its alert).
    """
    record = table.require_manifest(manifest_id)
    if record.state is ManifestState.COMPENSATED:
        return []
    if record.state is not ManifestState.CLAIMED:
        raise IllegalTransitionError(f"manifest {manifest_id}", record.state, ManifestState.COMPENSATED)
    now = utcnow()
    days.touch(table, record.day, table.schema.shard_of(manifest_id), now)
    failed = [
        identity
        for identity in sorted(record.files)
        if _release_file(table, identity, manifest_id, record.day, max_attempts, reason, now)
    ]
    _close_manifest(table, manifest_id, ManifestState.COMPENSATED, now, reason)
    if failed:
        log.error(
            "manifest %s: %d files FAILED after %d attempts: %s", manifest_id, len(failed), max_attempts, failed[:5]
        )
    return failed


def requeue_failed(table: LedgerTable, identity: str) -> None:
    """An operator's decision to try a FAILED file again, with a fresh attempt count; its day opens again."""
    reopen(table, identity, "#state = :failed", {":failed": FileState.FAILED}, remove="reason, alert_pending")


def reopen(
    table: LedgerTable, identity: str, condition: str, values: dict[str, Any], *, remove: str, what: str = ""
) -> None:
    """A terminal file back to PENDING with a fresh attempt count, if ``condition`` holds, and its day opened again.

    One transaction with the day's touch: the file is never pending on a day the sweeper and the sensor do not watch.
    """
    record = table.file(FileId.parse(identity))
    if record is None:
        raise LedgerError(f"file {identity} has no ledger record")
    moment = utcnow()
    now = iso(moment)
    update = f"SET #state = :to, attempts = :zero, updated_at = :now, #wpk = :wpk, #wsk = :wsk REMOVE #ttl, {remove}"
    values = {":to": FileState.PENDING, ":zero": 0, ":now": now, **values, **_pending(table, record.day, identity, now)}
    reopening = {
        "TableName": table.name,
        "Key": encode_item(table.schema.file_key(record.file_id)),
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": table.schema.placeholders(update, condition),
        "ExpressionAttributeValues": encode_item(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    touch = days.touch_action(table, record.day, table.schema.shard_of(identity), moment)
    cancellations = transact_write(table.client, [{"Update": reopening}, {"Update": touch}])
    if cancellations:
        found = cancellations[0].item
        if cancellations[0].condition_failed:
            raise illegal(what or f"file {identity}", found, FileState.PENDING)
        raise LedgerError(f"returning {identity} to PENDING conflicted with another write; try again")


def clear_alert(table: LedgerTable, identity: str, manifest_id: str) -> None:
    """A FAILED version's alert was published: it leaves the alert index (a no-op when already cleared)."""
    table.conditional_update(
        table.schema.file_key(FileId.parse(identity)),
        "REMOVE alert_pending, #wpk, #wsk",
        "alert_pending = :m",
        {":m": manifest_id},
    )


def _finish_files(
    table: LedgerTable, manifest_id: str, outcomes: Sequence[FileResult], now: datetime, from_state: FileState
) -> None:
    """Record up to 100 files' outcomes in one transaction: one request instead of one per file.

    Each file's update keeps its own condition (still ``from_state`` by this
    manifest); a file found already finished the same way (a retry) is dropped
    and the rest written again, any other state found is refused.
    """
    todo = list(outcomes)
    stalls = Stalls()
    while todo:
        cancellations = transact_write(
            table.client, [{"Update": _finish_action(table, manifest_id, o, now, from_state)} for o in todo]
        )
        if not cancellations:
            return
        finished = set()
        for outcome, cancellation in zip(todo, cancellations, strict=True):
            if cancellation.condition_failed:
                found = cancellation.item
                if not (found.get("state") == outcome.outcome and found.get("manifest_id") == manifest_id):
                    raise illegal(f"file {outcome.identity}", found, outcome.outcome)
                finished.add(outcome.identity)
        if not finished and not stalls.another():  # a conflict or throttling, not a file already finished
            raise LedgerError(
                f"manifest {manifest_id}: recording {len(todo)} outcomes kept conflicting "
                f"after {CONFLICT_RETRIES} attempts"
            )
        todo = [o for o in todo if o.identity not in finished]


def _finish_action(
    table: LedgerTable, manifest_id: str, outcome: FileResult, now: datetime, from_state: FileState
) -> dict[str, Any]:
    if outcome.outcome not in JOB_OUTCOMES:
        raise IllegalTransitionError(f"file {outcome.identity}", from_state, outcome.outcome)
    update = (
        "SET #state = :to, updated_at = :now, #ttl = :ttl, "
        "rows_in = :rin, rows_out = :rout, rows_quarantined = :rq, rows_rescued = :rr"
    )
    if from_state is FileState.CLAIMED:
        update += ", finished_at = :now"  # a restatement keeps when the file was first converted (its latency)
    values: dict[str, Any] = {
        ":to": outcome.outcome,
        ":from": from_state,
        ":m": manifest_id,
        ":now": iso(now),
        ":ttl": table.expires_at(now),
        ":rin": outcome.rows_in,
        ":rout": outcome.rows_out,
        ":rq": outcome.rows_quarantined,
        ":rr": outcome.rows_rescued,
    }
    if outcome.reason:
        update += ", reason = :reason"
        values[":reason"] = outcome.reason
    update += " REMOVE lease_expires_at"
    return {
        "TableName": table.name,
        "Key": encode_item(table.schema.file_key(FileId.parse(outcome.identity))),
        "UpdateExpression": update,
        "ConditionExpression": _BY_MANIFEST,
        "ExpressionAttributeNames": table.schema.placeholders(update, _BY_MANIFEST),
        "ExpressionAttributeValues": encode_item(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _release_file(
    table: LedgerTable, identity: str, manifest_id: str, day: str, max_attempts: int, reason: str, now: datetime
) -> bool:
    """Release one claimed file; True when it became FAILED."""
    record = table.file(FileId.parse(identity))
    if record is None:
        raise LedgerError(f"file {identity} of manifest {manifest_id} has no ledger record")
    if record.manifest_id != manifest_id or record.state is not FileState.CLAIMED:
        return False  # already released by an earlier compensation of this manifest, or finished
    attempts = record.attempts + 1
    failed = attempts >= max_attempts
    stamp = iso(now)
    values: dict[str, Any] = {
        ":from": FileState.CLAIMED,
        ":m": manifest_id,
        ":now": stamp,
        ":attempts": attempts,
        ":reason": reason,
    }
    update = "SET #state = :to, attempts = :attempts, reason = :reason, updated_at = :now"
    if failed:
        slot = table.schema.alert_slot(day, identity, stamp)
        values.update(
            {
                ":to": FileState.FAILED,
                ":ttl": table.expires_at(now),
                ":alert": manifest_id,
                ":wpk": slot[table.schema.index_partition_key],
                ":wsk": slot[table.schema.index_sort_key],
            }
        )
        update += ", #ttl = :ttl, alert_pending = :alert, #wpk = :wpk, #wsk = :wsk"
    else:
        values.update({":to": FileState.PENDING, **_pending(table, day, identity, stamp)})
        update += ", #wpk = :wpk, #wsk = :wsk"
    _transition(
        table,
        identity,
        update + " REMOVE lease_expires_at, manifest_id",
        _BY_MANIFEST,
        values,
        wanted=values[":to"],
        already_done=lambda found: found.get("manifest_id") != manifest_id,
    )
    return failed


def _pending(table: LedgerTable, day: str, identity: str, registered_at: str) -> dict[str, str]:
    """Values ``:wpk``/``:wsk`` that put a file version back into the pending index."""
    slot = table.schema.pending_slot(day, identity, registered_at)
    return {":wpk": slot[table.schema.index_partition_key], ":wsk": slot[table.schema.index_sort_key]}


def _transition(
    table: LedgerTable,
    identity: str,
    update: str,
    condition: str,
    values: dict[str, Any],
    *,
    wanted: str,
    already_done: Callable[[dict[str, Any]], bool],
) -> None:
    current = table.conditional_update(table.schema.file_key(FileId.parse(identity)), update, condition, values)
    if current is None or (current and already_done(current)):
        return
    raise illegal(f"file {identity}", current, wanted)


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

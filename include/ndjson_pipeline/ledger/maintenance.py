"""An operator's transition: replay a file the job quarantined whole, after the cause was fixed.

Only files a conversion quarantined (they carry the manifest that did) go back
to PENDING; versions rejected at intake and superseded versions never do: the
first would be rejected again, the second must never be converted (a newer
version of the key exists). A whole-file quarantine wrote no rows to the lake,
so converting the file again cannot double any row.
"""

from __future__ import annotations

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.ledger.errors import LedgerError
from ndjson_pipeline.ledger.table import LedgerTable, illegal

SUPERSEDED = "superseded"


def replay_quarantined(table: LedgerTable, identity: str) -> None:
    """QUARANTINED (by a conversion, not superseded) -> PENDING, with a fresh attempt count and no row counts."""
    record = table.file(FileId.parse(identity))
    if record is None:
        raise LedgerError(f"file {identity} has no ledger record")
    now = iso(utcnow())
    slot = table.schema.pending_slot(record.day, identity, now)
    refused = table.conditional_update(
        table.schema.file_key(record.file_id),
        "SET #state = :pending, attempts = :zero, updated_at = :now, #wpk = :wpk, #wsk = :wsk "
        "REMOVE #ttl, reason, manifest_id, finished_at, rows_in, rows_out, rows_quarantined, rows_rescued",
        "#state = :quarantined AND attribute_exists(manifest_id) AND NOT begins_with(reason, :superseded)",
        {
            ":pending": FileState.PENDING,
            ":quarantined": FileState.QUARANTINED,
            ":superseded": SUPERSEDED,
            ":zero": 0,
            ":now": now,
            ":wpk": slot[table.schema.index_partition_key],
            ":wsk": slot[table.schema.index_sort_key],
        },
    )
    if refused is not None:
        raise illegal(f"file {identity} (only a file a conversion quarantined, not superseded)", refused, "PENDING")


def replayable(state: FileState, manifest_id: str | None, reason: str | None) -> bool:
    """Whether ``replay_quarantined`` accepts a file in this state (the same rule as its condition)."""
    return state is FileState.QUARANTINED and manifest_id is not None and not (reason or "").startswith(SUPERSEDED)

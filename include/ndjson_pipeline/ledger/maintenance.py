"""An operator's transition: replay a file the job quarantined whole, after the cause was fixed.

Only files a conversion quarantined (they carry the manifest that did) go back
to PENDING; versions rejected at intake and superseded versions never do: the
first would be rejected again, the second must never be converted (a newer
version of the key exists). A whole-file quarantine wrote no rows to the lake,
so converting the file again cannot double any row.
"""

from __future__ import annotations

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import transitions
from ndjson_pipeline.ledger.table import LedgerTable

SUPERSEDED = "superseded"


def replay_quarantined(table: LedgerTable, identity: str) -> None:
    """QUARANTINED (by a conversion, not superseded) -> PENDING, with a fresh attempt count and no row counts."""
    transitions.reopen(
        table,
        identity,
        lambda record: replayable(record.state, record.manifest_id, record.reason),
        what=f"file {identity} (only a file a conversion quarantined, not superseded)",
    )


def replayable(state: FileState, manifest_id: str | None, reason: str | None) -> bool:
    """Whether ``replay_quarantined`` accepts a file in this state (the same rule as its condition)."""
    return state is FileState.QUARANTINED and manifest_id is not None and not (reason or "").startswith(SUPERSEDED)

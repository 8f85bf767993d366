"""An operator's transition: replay a file the job quarantined whole, after the cause was fixed.

Only files a conversion quarantined (they carry the manifest that did) go back
to PENDING; versions rejected at intake never do (they would be rejected again).
A version quarantined as superseded goes back only when its caller saw S3 still
hold it with its eTag (``still_in_s3``): the verdict "S3 no longer holds this
version" was then wrong, or the same bytes were written to the key again, and
either way its rows are not in the lake. Otherwise a superseded version must
never be converted (a newer version of the key exists). A whole-file quarantine
wrote no rows to the lake, so converting the file again cannot double any row.
"""

from __future__ import annotations

from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import transitions
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.manifest import SUPERSEDED


def replay_quarantined(table: LedgerTable, identity: str, *, still_in_s3: bool = False) -> None:
    """QUARANTINED (by a conversion) -> PENDING, with a fresh attempt count and no row counts.

    ``still_in_s3``: the caller saw S3 hold this very version (key and eTag), so a superseded verdict is taken back.
    """
    transitions.reopen(
        table,
        identity,
        lambda record: replayable(record.state, record.manifest_id, record.reason, still_in_s3=still_in_s3),
        what=f"file {identity} (only a file a conversion quarantined, superseded only while S3 still holds it)",
    )


def is_superseded(state: FileState, reason: str | None) -> bool:
    """Whether a conversion quarantined the version because S3 no longer held it."""
    return state is FileState.QUARANTINED and (reason or "").startswith(SUPERSEDED)


def replayable(state: FileState, manifest_id: str | None, reason: str | None, *, still_in_s3: bool = False) -> bool:
    """Whether ``replay_quarantined`` accepts a file in this state (the same rule as its condition)."""
    if state is not FileState.QUARANTINED or manifest_id is None:
        return False
    return still_in_s3 or not is_superseded(state, reason)

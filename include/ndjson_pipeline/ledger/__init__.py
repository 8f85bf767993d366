"""The file ledger: one DynamoDB item per landing file version, and its life tracked by its group.

Identity of a file version is (bucket, key, eTag): eTag is in both S3 events and
S3 listings, so notifications and the reconcile listing agree on identity; the
versionId, when the bucket has versioning, is kept as an attribute. A version's
item is written once, create-only (the dedup); the versions registered together
form a group, and claims, outcomes and compensations are written to groups
(``groups``), so a file costs a few write units end to end, not one
conditional write per step.

Every transition is a conditional write (``transitions``); pending groups and
open manifests are found through a sparse, per-day sharded index (``work``), so
finding work reads only work and no day has a single hot key. Modules:

- ``schema``: attribute names (from resources.json) and every key format;
- ``codec``: plain values to DynamoDB's typed form and back;
- ``records``: ``FileRecord``/``Group``/``ManifestRecord`` and the state names;
- ``groups``: a group's conditional writes (read, decide, put on the version read);
- ``transactions``: the 100-action limit, cancellation reasons, backoff, request tokens;
- ``registration``, ``claims``, ``transitions``: the state machine's writes;
- ``days``: the open-days registry (which days have open work) and closing idle days;
- ``work``: ``WorkIndex``, the pending-work and open-days scans (no client needed);
- ``wakes``: each day's wake, so one ready batch wakes one ingest run (requests, no client needed);
- ``ledger``: ``Ledger``, the entry point.
"""

from __future__ import annotations

from ndjson_pipeline.ledger.days import QUIET_SECONDS, DayState
from ndjson_pipeline.ledger.errors import IllegalTransitionError, LedgerError
from ndjson_pipeline.ledger.ledger import Ledger
from ndjson_pipeline.ledger.records import FileRecord, ManifestRecord, ManifestState
from ndjson_pipeline.ledger.registration import GroupLimits, RegisterOutcome, Registration, pad_sequencer
from ndjson_pipeline.ledger.schema import TableSchema, table_schema
from ndjson_pipeline.ledger.work import OpenDaysScan, PendingSummary, PendingSummaryScan, WorkIndex

__all__ = [
    "QUIET_SECONDS",
    "DayState",
    "FileRecord",
    "GroupLimits",
    "IllegalTransitionError",
    "Ledger",
    "LedgerError",
    "ManifestRecord",
    "ManifestState",
    "OpenDaysScan",
    "PendingSummary",
    "PendingSummaryScan",
    "RegisterOutcome",
    "Registration",
    "TableSchema",
    "WorkIndex",
    "pad_sequencer",
    "table_schema",
]

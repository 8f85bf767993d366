"""Operator actions on a day's files, from the maintenance DAG: requeue FAILED files, replay quarantined ones.

Each action selects its files from the ledger (a day through its landing
listing, one page at a time, or one manifest's files), then applies one
conditional transition per file: a file whose state changed since it was
selected is refused by its condition and reported as unchanged, never moved
twice. The files go back to PENDING; the next ingest or end-of-day run converts
them exactly as new files. A dry run selects and reports and changes nothing
(it writes no record either). A real run writes its record (who, what, which
files) under the day, and the day report lists the day's records.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import day_listing_pages, holds_version
from ndjson_pipeline.ledger import FileRecord, IllegalTransitionError, Ledger
from ndjson_pipeline.ledger.maintenance import is_superseded, replayable
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


class MaintenanceAction(StrEnum):
    REQUEUE_FAILED = "requeue_failed"  # FAILED -> PENDING, fresh attempt count
    REPLAY_QUARANTINED = "replay_quarantined"  # QUARANTINED whole by a conversion -> PENDING


@dataclass(frozen=True)
class MaintenanceRecord:
    """What one action did (or, in a dry run, would do) to the files of a day."""

    action: str
    day: str
    manifest_id: str | None
    dry_run: bool
    requested_by: str  # the DAG run that asked
    requested_at: str
    triggered_by: str | None  # the user who triggered that run, when Airflow knows one
    selected: int
    changed: list[str] = field(default_factory=list)  # identities moved to PENDING (would be, in a dry run)
    unchanged: dict[str, str] = field(default_factory=dict)  # identity -> why its transition was refused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_action(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    *,
    action: MaintenanceAction,
    day: str,
    manifest_id: str | None,
    dry_run: bool,
    requested_by: str,
    triggered_by: str | None = None,
) -> MaintenanceRecord:
    """Select the action's files of ``day`` (or of ``manifest_id``, a manifest of that day) and move them."""
    selected = list(_select(ledger, storage, settings, action, day, manifest_id))
    changed: list[str] = []
    unchanged: dict[str, str] = {}
    transition = _transition(ledger, action)
    try:
        for record, still_in_s3 in selected:
            if dry_run:
                changed.append(record.identity)
                continue
            try:
                transition(record.identity, still_in_s3)
            except IllegalTransitionError as exc:
                unchanged[record.identity] = str(exc)
                continue
            changed.append(record.identity)
    finally:
        # Written even when an error stops the action half way: what was changed is never unrecorded.
        result = _record(
            action, day, manifest_id, dry_run, requested_by, triggered_by, len(selected), changed, unchanged
        )
        if not dry_run:
            uri = settings.layout.maintenance_uri(day, f"{action}-{requested_by}")
            storage.write_bytes(uri, json.dumps(result.as_dict(), indent=2, sort_keys=True).encode())
    return result


def _record(
    action: MaintenanceAction,
    day: str,
    manifest_id: str | None,
    dry_run: bool,
    requested_by: str,
    triggered_by: str | None,
    selected: int,
    changed: list[str],
    unchanged: dict[str, str],
) -> MaintenanceRecord:
    result = MaintenanceRecord(
        action=str(action),
        day=day,
        manifest_id=manifest_id,
        dry_run=dry_run,
        requested_by=requested_by,
        requested_at=utcnow().isoformat(),
        triggered_by=triggered_by,
        selected=selected,
        changed=changed,
        unchanged=unchanged,
    )
    log.info(
        "%s%s of %s%s: %d selected, %d %s, %d unchanged",
        "dry run: " if dry_run else "",
        action,
        day,
        f" (manifest {manifest_id})" if manifest_id else "",
        selected,
        len(changed),
        "would change" if dry_run else "changed",
        len(unchanged),
        extra={
            "action": str(action),
            "day": day,
            "manifest_id": manifest_id,
            "dry_run": dry_run,
            "selected": selected,
            "changed": len(changed),
            "unchanged": len(unchanged),
        },
    )
    return result


def read_records(storage: Storage, settings: PipelineSettings, day: str) -> list[dict[str, Any]]:
    """The day's action records, oldest first."""
    bodies = (storage.read_bytes(uri) for uri in storage.list(settings.layout.maintenance_prefix(day)))
    return sorted((json.loads(body) for body in bodies), key=lambda r: str(r["requested_at"]))


def _transition(ledger: Ledger, action: MaintenanceAction) -> Callable[[str, bool], None]:
    if action is MaintenanceAction.REQUEUE_FAILED:
        return lambda identity, _still_in_s3: ledger.requeue_failed(identity)
    return lambda identity, still_in_s3: ledger.replay_quarantined(identity, still_in_s3=still_in_s3)


def _wanted(action: MaintenanceAction, record: FileRecord, still_in_s3: bool) -> bool:
    if action is MaintenanceAction.REQUEUE_FAILED:
        return record.state is FileState.FAILED
    return replayable(record.state, record.manifest_id, record.reason, still_in_s3=still_in_s3)


def _select(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    action: MaintenanceAction,
    day: str,
    manifest_id: str | None,
) -> Iterator[tuple[FileRecord, bool]]:
    """The records the action takes, each with whether S3 was seen to hold that very version."""
    for identities, listed in _candidates(ledger, storage, settings, day, manifest_id):
        records = ledger.get_files(identities)
        for identity in identities:
            record = records.get(identity)
            if record is None:
                continue
            still_in_s3 = listed or (
                is_superseded(record.state, record.reason) and holds_version(storage.s3, record.file_id)
            )
            if _wanted(action, record, still_in_s3):
                yield record, still_in_s3


def _candidates(
    ledger: Ledger, storage: Storage, settings: PipelineSettings, day: str, manifest_id: str | None
) -> Iterator[tuple[list[str], bool]]:
    """Identities to look at, and whether they come from S3's listing (so S3 holds each of them as it is)."""
    if manifest_id:
        manifest = ledger.get_manifest(manifest_id)
        if manifest is None:
            raise PipelineError(f"manifest {manifest_id} has no ledger record")
        if manifest.day != day:
            raise PipelineError(f"manifest {manifest_id} is of day {manifest.day}, not {day}")
        yield ledger.identities_of(manifest), False
        return
    bucket = settings.names.landing_bucket
    for objects in day_listing_pages(storage.s3, bucket, day, settings):
        yield [str(FileId.from_listing(bucket, obj)) for obj in objects], True

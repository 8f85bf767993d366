"""Planning: claim pending files into manifests and write each manifest, create-only, to S3."""

from __future__ import annotations

import logging
from datetime import timedelta

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.ledger import Ledger, ManifestRecord
from ndjson_pipeline.ledger.claims import Batch
from ndjson_pipeline.manifest import Manifest, ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


def plan_manifests(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    days: list[str],
    *,
    owner: str,
    max_manifests: int | None = None,
    woken: bool = False,
) -> list[ManifestRef]:
    """Claim the pending files of ``days`` into manifests and write each manifest to S3.

    A retry of the same task (same ``owner``) first re-adopts every manifest it
    claimed before it died, on any day (not only the ``days`` ready now), so a
    retry never creates a second manifest for the same files and never leaves
    one to wait out its lease. Then, up to ``max_manifests`` in all, it claims
    more; the rest of the pending files stay unclaimed for the next run.

    ``woken``: an ingest run whose sensor took the days' wakes (``ledger.wakes``). It claims batches only: full
    manifests, and files that do not fill one only when they make a batch themselves (the thresholds of
    ``PipelineSettings.batching``: by default, once the oldest waited the batch wait). So a day that became
    ready on its size leaves its young remainder to grow into the next run instead of a small run of its own.
    Then it releases the wakes, so the days' next batches can wake a run. Otherwise (the end-of-day flush) it
    claims whatever is pending.
    """
    limit = max_manifests or settings.max_manifests_per_run
    batching = settings.batching
    waited = iso(utcnow() - timedelta(seconds=batching.wait_seconds))
    batch = Batch(files=batching.files, bytes=batching.bytes, registered_before=waited) if woken else None
    planned = readopt_manifests(ledger, owner)
    for day in days:
        while len(planned) < limit:
            manifest = ledger.claim_batch(
                day,
                max_files=settings.max_files_per_manifest,
                max_bytes=settings.max_bytes_per_manifest,
                lease_seconds=settings.lease_seconds,
                owner=owner,
                batch=batch,
            )
            if manifest is None:
                break
            planned.append(manifest)
    refs = [write_manifest(storage, settings, manifest) for manifest in planned]
    if woken:
        for day in days:
            ledger.release_wake(day, owner)
    log.info(
        "planned %d manifests (%d files, %d bytes) for days %s",
        len(refs),
        sum(r.files for r in refs),
        sum(r.bytes for r in refs),
        days,
        extra={
            "days": days,
            "manifests": len(refs),
            "files": sum(r.files for r in refs),
            "bytes": sum(r.bytes for r in refs),
        },
    )
    for ref in refs:
        log.debug(
            "manifest %s of %s: %d files, %d bytes",
            ref.manifest_id,
            ref.day,
            ref.files,
            ref.bytes,
            extra={"manifest_id": ref.manifest_id, "day": ref.day, "files": ref.files, "bytes": ref.bytes},
        )
    return refs


def holds_open_manifests(ledger: Ledger, owner: str) -> list[ManifestRecord]:
    """The open manifests ``owner`` claimed (in an earlier try), on every open day, oldest day first."""
    held = []
    for day in reversed(ledger.open_days()):
        for manifest_id, claimer in ledger.open_manifest_owners(day).items():
            if claimer != owner:
                continue
            record = ledger.get_manifest(manifest_id)  # the index is eventually consistent
            if record is not None and record.is_open:
                held.append(record)
    return held


def readopt_manifests(ledger: Ledger, owner: str) -> list[Manifest]:
    """The open manifests ``owner`` claimed in an earlier try, on every open day, oldest day first."""
    adopted = [ledger.manifest_of(record) for record in holds_open_manifests(ledger, owner)]
    if adopted:
        log.info(
            "re-adopting %d manifests claimed by %s in an earlier try",
            len(adopted),
            owner,
            extra={"owner": owner, "manifest_ids": [m.manifest_id for m in adopted]},
        )
    return adopted


def write_manifest(storage: Storage, settings: PipelineSettings, manifest: Manifest) -> ManifestRef:
    """Create-only write: an existing object must hold the same bytes, or the write is refused."""
    uri = settings.layout.manifest_uri(manifest.day, manifest.manifest_id)
    body = manifest.to_json().encode()
    if not storage.create_bytes(uri, body) and storage.read_bytes(uri) != body:
        raise PipelineError(f"{uri} exists with different content than manifest {manifest.manifest_id}")
    return ManifestRef.of(manifest)

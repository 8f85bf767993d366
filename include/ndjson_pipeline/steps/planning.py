"""Planning: claim pending files into manifests and write each manifest, create-only, to S3."""

from __future__ import annotations

import logging

from ndjson_pipeline.ledger import Ledger, ManifestRecord
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
) -> list[ManifestRef]:
    """Claim the pending files of ``days`` into manifests and write each manifest to S3.

    A retry of the same task (same ``owner``) first re-adopts every manifest it
    claimed before it died, on any day (not only the ``days`` ready now), so a
    retry never creates a second manifest for the same files and never leaves
    one to wait out its lease. Then, up to ``max_manifests`` in all, it claims
    more; the rest of the pending files stay unclaimed for the next run.
    """
    limit = max_manifests or settings.max_manifests_per_run
    planned = readopt_manifests(ledger, owner)
    for day in days:
        while len(planned) < limit:
            manifest = ledger.claim_batch(
                day,
                max_files=settings.max_files_per_manifest,
                max_bytes=settings.max_bytes_per_manifest,
                lease_seconds=settings.lease_seconds,
                owner=owner,
            )
            if manifest is None:
                break
            planned.append(manifest)
    refs = [write_manifest(storage, settings, manifest) for manifest in planned]
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

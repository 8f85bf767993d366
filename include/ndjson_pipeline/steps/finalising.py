"""Finalising: record a manifest's outcome from the job's result, or compensate a conversion that failed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.files import FileState
from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


def read_result(storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> JobResult | None:
    body = storage.read_bytes_if_exists(settings.layout.result_uri(ref.day, ref.manifest_id))
    return None if body is None else JobResult.from_json(body)


def read_manifest(storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> Manifest:
    return Manifest.from_json(storage.read_bytes(settings.layout.manifest_uri(ref.day, ref.manifest_id)))


@dataclass(frozen=True)
class Finalised:
    manifest_id: str
    status: str  # SUCCEEDED | COMPENSATED
    files_done: int = 0
    files_quarantined: int = 0
    files_failed: tuple[str, ...] = ()
    rows_in: int = 0
    rows_out: int = 0
    rows_rescued: int = 0
    rows_quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def finalise_manifest(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    ref: ManifestRef,
    *,
    stop_active_runs: Callable[[str], None],
    catalog: DatasetCatalog | None,
) -> Finalised:
    """Record a manifest's outcome: files DONE/QUARANTINED from the job's result, or compensation.

    The job writes its result last, so a result means complete output: its files
    are recorded, then the partitions it wrote are added to the ``catalog`` (a
    retry after a catalog error adds them again; the ledger part is already
    done and does not repeat). Without
    one the conversion failed for good: any run still going is stopped, the
    manifest's published output is removed, and its files go back to PENDING
    (or FAILED after ``max_attempts``). Both paths are conditional on the
    manifest's recorded state and safe to repeat.
    """
    record = ledger.get_manifest(ref.manifest_id)
    if record is None:
        raise PipelineError(f"manifest {ref.manifest_id} has no ledger record")
    if record.state is ManifestState.COMPENSATED:
        log.info("manifest %s was already compensated", ref.manifest_id)
        return Finalised(ref.manifest_id, ManifestState.COMPENSATED)
    result = read_result(storage, settings, ref)
    if result is None:
        if record.state is ManifestState.SUCCEEDED:
            uri = settings.layout.result_uri(ref.day, ref.manifest_id)
            raise PipelineError(f"manifest {ref.manifest_id} is SUCCEEDED but its result {uri} is gone")
        return compensate(ledger, storage, settings, ref, reason="conversion failed", stop_active_runs=stop_active_runs)
    manifest = read_manifest(storage, settings, ref)
    result.check_reconciled(manifest)
    ledger.complete_manifest(ref.manifest_id, result.files)
    if catalog is not None:
        added = catalog.add_partitions_of(result)
        if added:
            log.info("manifest %s: partitions %s added to the catalog", ref.manifest_id, added)
    states = Counter(f.outcome for f in result.files)
    log.info(
        "manifest %s finalised: %d DONE, %d QUARANTINED, rows in %d = out %d + quarantined %d (rescued %d)",
        ref.manifest_id,
        states[FileState.DONE],
        states[FileState.QUARANTINED],
        result.rows_in,
        result.rows_out,
        result.rows_quarantined,
        result.rows_rescued,
    )
    return Finalised(
        manifest_id=ref.manifest_id,
        status=ManifestState.SUCCEEDED,
        files_done=states[FileState.DONE],
        files_quarantined=states[FileState.QUARANTINED],
        rows_in=result.rows_in,
        rows_out=result.rows_out,
        rows_rescued=result.rows_rescued,
        rows_quarantined=result.rows_quarantined,
    )


def compensate(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    ref: ManifestRef,
    *,
    reason: str,
    stop_active_runs: Callable[[str], None],
) -> Finalised:
    stop_active_runs(ref.manifest_id)
    removed = discard_output(storage, settings, ref)
    failed = ledger.compensate_manifest(ref.manifest_id, max_attempts=settings.max_attempts, reason=reason)
    log.warning(
        "manifest %s compensated (%s): removed %d output objects, %d files FAILED",
        ref.manifest_id,
        reason,
        removed,
        len(failed),
    )
    return Finalised(ref.manifest_id, ManifestState.COMPENSATED, files_failed=tuple(failed))


def discard_output(storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> int:
    """Delete whatever a failed run of this manifest published, so its files can be converted again.

    The job lists every object it is about to publish (the publish log) before
    it publishes any, so partial output is found under any partition. A delete
    that fails for any object raises, and the files are not released.
    """
    log_uri = settings.layout.publish_log_uri(ref.day, ref.manifest_id)
    published = PublishLog.read(storage, log_uri)
    if published is None:
        return 0  # nothing was ever published
    storage.delete(sorted(published.uris))
    storage.delete([log_uri])
    return len(published.uris)

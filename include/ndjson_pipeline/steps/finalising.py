"""Finalising: record a manifest's outcome from the job's result, or compensate a conversion that failed."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ndjson_pipeline.catalog import DatasetTable
from ndjson_pipeline.files import FileState
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, ManifestRef
from ndjson_pipeline.outputs import discard_output, read_manifest, read_result
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.converting import ConversionRuns
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


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
    runs: ConversionRuns,
    catalog: DatasetTable | None,
) -> Finalised:
    """Record a manifest's outcome: files DONE/QUARANTINED from the job's result, or compensation.

    The job writes its result last, so a result means complete output: it is
    published to the ``catalog``'s table (its partitions added, or its files
    committed to the Iceberg table), then its files are recorded. Publishing
    first means a manifest the ledger calls SUCCEEDED is always visible: a retry,
    or the sweeper, after a crash in between publishes again (idempotent) and
    records. Without a result the conversion failed for good and the manifest is
    compensated (``compensate_fenced``). A manifest found compensated already
    may still have a run that started late: it is stopped, taken out of the
    table if a finaliser had published it, and whatever it wrote is removed.
    Every path is conditional on the manifest's recorded state and safe to repeat.
    """
    record = ledger.get_manifest(ref.manifest_id)
    if record is None:
        raise PipelineError(f"manifest {ref.manifest_id} has no ledger record")
    if record.state is ManifestState.COMPENSATED:
        runs.stop(ref.manifest_id)
        if catalog is not None:
            catalog.withdraw(ref)
        removed = discard_output(storage, settings, ref)
        log.info(
            "manifest %s was already compensated; removed %d objects of a late run",
            ref.manifest_id,
            removed,
            extra={"manifest_id": ref.manifest_id, "day": ref.day, "objects_removed": removed},
        )
        return Finalised(ref.manifest_id, ManifestState.COMPENSATED)
    result = read_result(storage, settings, ref)
    if result is not None:
        return record_result(ledger, storage, settings, ref, result, catalog=catalog)
    if record.state is ManifestState.SUCCEEDED:
        uri = settings.layout.result_uri(ref.day, ref.manifest_id)
        raise PipelineError(f"manifest {ref.manifest_id} is SUCCEEDED but its result {uri} is gone")
    if not ledger.fence_manifest(ref.manifest_id):
        # Closed by someone else between the two reads: finalise what they recorded.
        return finalise_manifest(ledger, storage, settings, ref, runs=runs, catalog=catalog)
    return compensate_fenced(ledger, storage, settings, ref, reason="conversion failed", runs=runs, catalog=catalog)


def record_result(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    ref: ManifestRef,
    result: JobResult,
    *,
    catalog: DatasetTable | None,
) -> Finalised:
    """Record a complete conversion: published to the catalog's table, then its files DONE/QUARANTINED."""
    manifest = read_manifest(storage, settings, ref)
    result.check_reconciled(manifest)
    if catalog is not None:
        published = catalog.publish(ref, result)
        log.info(
            "manifest %s: %s",
            ref.manifest_id,
            published,
            extra={"manifest_id": ref.manifest_id, "day": ref.day, "published": published},
        )
    ledger.complete_manifest(ref.manifest_id, result.files)
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
        extra={
            "manifest_id": ref.manifest_id,
            "day": ref.day,
            "files_done": states[FileState.DONE],
            "files_quarantined": states[FileState.QUARANTINED],
            "rows_in": result.rows_in,
            "rows_out": result.rows_out,
            "rows_quarantined": result.rows_quarantined,
            "rows_rescued": result.rows_rescued,
        },
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


def compensate_fenced(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    ref: ManifestRef,
    *,
    reason: str,
    runs: ConversionRuns,
    catalog: DatasetTable | None,
) -> Finalised:
    """Give up a fenced manifest (``Ledger.fence_manifest``): stop its runs, remove their output, release its files.

    The fence already keeps any new run from starting or being adopted, so once
    the runs are stopped nothing publishes for this manifest any more. If a run
    finished before it could be stopped, its result is recorded instead. A
    delete that fails raises before any file is released: the files stay
    CLAIMED, and the fenced manifest reads as expired, so the sweeper's next pass
    takes the compensation up again.
    """
    runs.stop(ref.manifest_id)
    result = read_result(storage, settings, ref)
    if result is not None:
        log.info(
            "manifest %s: its run finished before it could be stopped; recording its result",
            ref.manifest_id,
            extra={"manifest_id": ref.manifest_id, "day": ref.day},
        )
        return record_result(ledger, storage, settings, ref, result, catalog=catalog)
    if catalog is not None:
        # A finaliser that raced this compensation may have published it; a manifest never published: no commit.
        catalog.withdraw(ref)
    removed = discard_output(storage, settings, ref)
    failed = ledger.compensate_manifest(ref.manifest_id, max_attempts=settings.max_attempts, reason=reason)
    log.warning(
        "manifest %s compensated (%s): removed %d output objects, %d files FAILED",
        ref.manifest_id,
        reason,
        removed,
        len(failed),
        extra={
            "manifest_id": ref.manifest_id,
            "day": ref.day,
            "objects_removed": removed,
            "files_failed": len(failed),
        },
    )
    return Finalised(ref.manifest_id, ManifestState.COMPENSATED, files_failed=tuple(failed))


def publish_alerts(ledger: Ledger, manifest_id: str, publish: Callable[[str, list[str]], None]) -> list[str]:
    """Publish the alert for the files this manifest's compensation FAILED, if it is still pending; clear it.

    Derived from the ledger (``alert_pending`` on each FAILED version), so a
    retried finaliser alerts for what its first try failed. A crash between
    publishing and clearing publishes again on the next call, with the same
    alert id (``publish`` derives it from the manifest and the files): at least
    once, and exactly once for a consumer that drops repeated ids.
    """
    pending = ledger.pending_alerts_of(manifest_id)
    if pending:
        publish(manifest_id, pending)
        ledger.clear_alerts(manifest_id, pending)
    return pending

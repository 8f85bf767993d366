"""The orchestration steps as plain functions: plan manifests, finalise, compensate, sweep, report.

Airflow tasks call these with boto3 clients built from the provider's hooks;
tests call them with clients of the local moto server. Every step is keyed by
content (day, manifest id, file identity) and is safe to repeat.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from ndjson_pipeline.clock import utc_day, utcnow
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.intake import day_listing_pages
from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A step found the pipeline's recorded state inconsistent; the message names the manifest or day."""


def days_to_watch(now: datetime, registered_days: list[str]) -> list[str]:
    """Today and yesterday (late files), plus any day that just received files, newest first."""
    days = {utc_day(now), utc_day(now - timedelta(days=1)), *registered_days}
    return sorted(days, reverse=True)


# ------------------------------------------------------------------ planning


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

    A retry of the same task (same ``owner``) first re-adopts the manifests it
    claimed before it died, so a retry never creates a second manifest for the
    same files. At most ``max_manifests`` are planned; the rest of the pending
    files stay unclaimed for the next run.
    """
    limit = max_manifests or settings.max_manifests_per_run
    planned: list[Manifest] = []
    for day in days:
        for manifest_id in ledger.open_manifests(day):
            record = ledger.get_manifest(manifest_id)
            if record and record.owner == owner and record.is_open:
                planned.append(ledger.manifest_of(record))
    if planned:
        log.info("re-adopting %d manifests claimed by %s in an earlier try", len(planned), owner)
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
    refs = [write_manifest(storage, settings, manifest) for manifest in planned[:limit]]
    log.info(
        "planned %d manifests (%d files, %d bytes) for days %s",
        len(refs),
        sum(r.files for r in refs),
        sum(r.bytes for r in refs),
        days,
    )
    return refs


def write_manifest(storage: Storage, settings: PipelineSettings, manifest: Manifest) -> ManifestRef:
    """Create-only write: an existing object must hold the same bytes, or the write is refused."""
    uri = settings.layout.manifest_uri(manifest.day, manifest.manifest_id)
    body = manifest.to_json().encode()
    if not storage.create_bytes(uri, body) and storage.read_bytes(uri) != body:
        raise PipelineError(f"{uri} exists with different content than manifest {manifest.manifest_id}")
    return ManifestRef.of(manifest)


# ---------------------------------------------------------------- finalising


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
) -> Finalised:
    """Record a manifest's outcome: files DONE/QUARANTINED from the job's result, or compensation.

    The job writes its result last, so a result means complete output. Without
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


# ------------------------------------------------------------------ sweeping


def sweep_expired_claims(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    days: list[str],
    *,
    run_is_active: Callable[[str], bool],
    stop_active_runs: Callable[[str], None],
) -> list[Finalised]:
    """Repair claims whose lease ran out (a finaliser that never ran): compensate, unless still converting."""
    repaired = []
    for day in days:
        for manifest_id in ledger.expired_manifests(day):
            if run_is_active(manifest_id):
                ledger.extend_lease(manifest_id, settings.lease_seconds)
                log.info("manifest %s: lease expired but its run is active; lease extended", manifest_id)
                continue
            ref = ref_for(day, manifest_id, ledger)
            if read_result(storage, settings, ref) is not None:
                # The job finished but nobody recorded it: finalise rather than redo.
                repaired.append(finalise_manifest(ledger, storage, settings, ref, stop_active_runs=stop_active_runs))
            else:
                repaired.append(
                    compensate(
                        ledger, storage, settings, ref, reason="claim lease expired", stop_active_runs=stop_active_runs
                    )
                )
    return repaired


def ref_for(day: str, manifest_id: str, ledger: Ledger) -> ManifestRef:
    record = ledger.get_manifest(manifest_id)
    return ManifestRef(manifest_id, day, 0, 0) if record is None else record.ref()


# ----------------------------------------------------------------- reporting


def day_report(ledger: Ledger, storage: Storage, settings: PipelineSettings, day: str) -> dict[str, Any]:
    """Completeness and figures of one day, from the day's S3 listing and the ledger, one page at a time."""
    bucket = settings.names.landing_bucket
    states: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    latencies: list[float] = []
    unreconciled: list[str] = []
    not_terminal: list[str] = []
    failed: list[str] = []
    for objects in day_listing_pages(storage.s3, bucket, day, settings):
        identities = [str(FileId.from_listing(bucket, obj)) for obj in objects]
        records = ledger.get_files(identities)
        for identity in identities:
            record = records.get(identity)
            if record is None or not record.state.terminal:
                states[record.state if record else "UNKNOWN"] += 1
                not_terminal.append(identity)
                continue
            states[record.state] += 1
            if record.state is FileState.FAILED:
                failed.append(identity)
            totals["bytes"] += record.file.size
            totals["rows_in"] += record.rows_in
            totals["rows_out"] += record.rows_out
            totals["rows_rescued"] += record.rows_rescued
            totals["rows_quarantined"] += record.rows_quarantined
            if not record.reconciled:
                unreconciled.append(identity)
            if record.state is FileState.DONE and record.finished_at:
                arrived = datetime.fromisoformat(record.event_time)
                finished = datetime.fromisoformat(record.finished_at)
                latencies.append(max(0.0, (finished - arrived).total_seconds()))
    report = {
        "day": day,
        "generated_at": utcnow().isoformat(),
        "complete": not not_terminal and not unreconciled,
        "files": sum(states.values()),
        "files_by_state": dict(sorted(states.items())),
        "bytes": totals["bytes"],
        "rows_in": totals["rows_in"],
        "rows_out": totals["rows_out"],
        "rows_rescued": totals["rows_rescued"],
        "rows_quarantined": totals["rows_quarantined"],
        "latency_seconds_p50": _percentile(latencies, 50),
        "latency_seconds_p95": _percentile(latencies, 95),
        "not_terminal": not_terminal[:20],
        "unreconciled": unreconciled[:20],
        "failed": failed[:20],
    }
    uri = settings.layout.report_uri(day)
    storage.write_bytes(uri, json.dumps(report, indent=2, sort_keys=True).encode())
    report["report_uri"] = uri
    return report


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 3)

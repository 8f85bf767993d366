"""Sweeping: repair claims whose lease ran out, publish alerts a finaliser never sent, close days without work.

The sweeper is the saga's guarantee: finalisers and callbacks can die or never
fire. It visits every open day (``Ledger.open_days``), however old. Each
manifest is repaired on its own: one that cannot be repaired (a delete S3
refuses, a run that will not stop, an inconsistent record) is reported with
its reason and retried on the next pass, and never keeps the others from being
repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ndjson_pipeline.catalog import DatasetTable
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import DayState, Ledger, ManifestState
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.converting import ConversionRuns
from ndjson_pipeline.steps.finalising import Finalised, compensate_fenced
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    repaired: list[Finalised] = field(default_factory=list)
    extended: list[str] = field(default_factory=list)  # leases pushed forward: their run is still going
    unrepaired: dict[str, str] = field(default_factory=dict)  # manifest id -> why it could not be repaired
    days: dict[str, DayState] = field(default_factory=dict)  # each swept day as the sweep left it


def sweep_expired_claims(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    days: list[str],
    *,
    runs: ConversionRuns,
    catalog: DatasetTable | None,
    now: datetime | None = None,
) -> SweepReport:
    """Repair the expired claims of ``days``, manifest by manifest, then try to close each day that has no work."""
    now = now or utcnow()
    report = SweepReport()
    for day in days:
        for manifest_id in ledger.expired_manifests(day, now):
            try:
                _repair(
                    ledger,
                    storage,
                    settings,
                    day,
                    manifest_id,
                    report,
                    now=now,
                    runs=runs,
                    catalog=catalog,
                )
            except Exception as exc:
                report.unrepaired[manifest_id] = f"{exc.__class__.__name__}: {exc}"
                log.error(
                    "manifest %s of %s could not be repaired (%s); next sweep retries",
                    manifest_id,
                    day,
                    exc,
                    extra={"manifest_id": manifest_id, "day": day},
                )
        try:
            report.days[day] = ledger.close_day_if_idle(day, now=now)
        except Exception as exc:
            log.warning(
                "could not check whether %s has work left (%s); next sweep retries", day, exc, extra={"day": day}
            )
    return report


def _repair(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    day: str,
    manifest_id: str,
    report: SweepReport,
    *,
    now: datetime,
    runs: ConversionRuns,
    catalog: DatasetTable | None,
) -> None:
    """One expired claim: lease extended while its run goes on, else compensated (or its result recorded)."""
    record = ledger.get_manifest(manifest_id)
    if record is None:
        raise PipelineError(f"manifest {manifest_id} of {day} is in the work index but has no ledger record")
    if record.state is not ManifestState.CLAIMED:
        return  # closed since the index was read
    if record.is_open and runs.active_run_of(manifest_id) is not None:
        ledger.extend_lease(manifest_id, settings.lease_seconds)
        report.extended.append(manifest_id)
        log.info(
            "manifest %s: lease expired but its run is active; lease extended",
            manifest_id,
            extra={"manifest_id": manifest_id, "day": day},
        )
        return
    # Conditional on the lease having run out: a conversion that extended it just now keeps its claim.
    if not ledger.fence_manifest(manifest_id, lease_expired_at=now):
        log.info(
            "manifest %s: a conversion took its claim back; not compensating",
            manifest_id,
            extra={"manifest_id": manifest_id, "day": day},
        )
        return
    finalised = compensate_fenced(
        ledger,
        storage,
        settings,
        record.ref(),
        reason="claim lease expired",
        runs=runs,
        catalog=catalog,
    )
    report.repaired.append(finalised)


def publish_stranded_alerts(
    ledger: Ledger, days: list[str], publish: Callable[[str, list[str]], None]
) -> dict[str, list[str]]:
    """Publish the alerts of FAILED files that no finaliser published (it died first); what was published.

    Like ``finalising.publish_alerts``, at least once, with the same alert id on
    a repeat. A manifest whose alert cannot be published is retried next sweep.
    """
    published: dict[str, list[str]] = {}
    for day in days:
        for manifest_id, identities in ledger.pending_alerts(day).items():
            try:
                publish(manifest_id, identities)
                ledger.clear_alerts(manifest_id, identities)
            except Exception as exc:
                log.error(
                    "alert of manifest %s (%d FAILED files) not published: %s",
                    manifest_id,
                    len(identities),
                    exc,
                    extra={"manifest_id": manifest_id, "day": day, "files_failed": len(identities)},
                )
                continue
            published[manifest_id] = identities
    return published

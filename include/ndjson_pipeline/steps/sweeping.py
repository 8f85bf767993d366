"""Sweeping: repair claims whose lease ran out because their finaliser never ran."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.finalising import Finalised, compensate, finalise_manifest, read_result
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


def sweep_expired_claims(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    days: list[str],
    *,
    run_is_active: Callable[[str], bool],
    stop_active_runs: Callable[[str], None],
    catalog: DatasetCatalog | None,
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
                repaired.append(
                    finalise_manifest(
                        ledger, storage, settings, ref, stop_active_runs=stop_active_runs, catalog=catalog
                    )
                )
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

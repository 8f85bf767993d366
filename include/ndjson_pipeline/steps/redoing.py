"""Clear = redo: which manifest a (cleared) conversion or finalise task of a manifest works on.

The mapped tasks keep the manifest reference they were expanded with, so a
cleared ``convert`` of a manifest that finalise already compensated follows
the manifest's redo chain: a successor is claimed (``Ledger.redo_compensated``)
and converted in its place, and finalise records or compensates that successor.
A manifest that succeeded, or is still open, is worked on as it is; a chain
ends at its first manifest that is not compensated, or at one with nothing
left to redo.
"""

from __future__ import annotations

import logging

from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.planning import write_manifest
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)


def manifest_to_convert(ledger: Ledger, storage: Storage, settings: PipelineSettings, ref: ManifestRef) -> ManifestRef:
    """The manifest a conversion task of ``ref`` converts: ``ref``, or its redo, claimed now if need be.

    The successor's manifest document is written (create-only) before it is
    returned, so the job finds it even when the redo that claimed it died.
    """
    current = _follow(ledger, ref, settings.lease_seconds)
    if current.manifest_id != ref.manifest_id:
        record = ledger.get_manifest(current.manifest_id)
        if record is not None and record.is_open:
            write_manifest(storage, settings, ledger.manifest_of(record))
        log.info(
            "manifest %s was compensated; converting its redo %s instead",
            ref.manifest_id,
            current.manifest_id,
            extra={"manifest_id": ref.manifest_id, "day": ref.day, "redo_manifest_id": current.manifest_id},
        )
    return current


def manifest_to_finalise(ledger: Ledger, ref: ManifestRef) -> ManifestRef:
    """The manifest a finalise task of ``ref`` records: the end of its redo chain (never claims anything)."""
    return _follow(ledger, ref, None)


def _follow(ledger: Ledger, ref: ManifestRef, lease_seconds: int | None) -> ManifestRef:
    """Walk the redo chain from ``ref``; with ``lease_seconds``, redo the compensated manifest at its end."""
    while True:
        record = ledger.get_manifest(ref.manifest_id)
        if record is None or record.state is not ManifestState.COMPENSATED:
            return ref
        successor = ledger.successor_of(ref.manifest_id)
        if successor is None and lease_seconds is not None:
            successor = ledger.redo_compensated(ref.manifest_id, lease_seconds=lease_seconds)
        if successor is None:
            return ref
        next_record = ledger.get_manifest(successor)
        if next_record is None:
            raise PipelineError(f"manifest {ref.manifest_id} is redone as {successor}, which has no ledger record")
        ref = next_record.ref()

"""Whether a manifest needs a conversion run: decided from recorded state alone, the same on every try.

A retry or a clear of the conversion task asks the same question as the first
try, keyed by the manifest id (never by task, try or map index), so a manifest
is converted at most once at a time and never again once it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ndjson_pipeline.ledger import ManifestRecord


class ConversionKind(StrEnum):
    CONVERT = "convert"  # start one run
    ALREADY_DONE = "already_done"  # the job's result exists: the finaliser records it
    SKIP = "skip"  # nothing to convert: the manifest is closed or unknown
    WAIT_FOR = "wait_for"  # a run of this manifest is still going: wait for it, start none


@dataclass(frozen=True)
class ConversionDecision:
    kind: ConversionKind
    reason: str
    run_id: str | None = None  # the run to wait for (WAIT_FOR)

    @property
    def holds_the_claim(self) -> bool:
        """A run will (still) be working on the manifest: its lease must outlast the run."""
        return self.kind in (ConversionKind.CONVERT, ConversionKind.WAIT_FOR)


def decide_conversion(
    manifest_id: str, record: ManifestRecord | None, *, result_exists: bool, active_run_id: str | None
) -> ConversionDecision:
    """What the conversion task does for ``manifest_id``.

    :param record: the manifest's ledger record (None when there is none).
    :param result_exists: whether the job's result object for the manifest exists.
    :param active_run_id: a run carrying the manifest that has not ended, if any.
    """
    if record is None:
        return ConversionDecision(ConversionKind.SKIP, f"manifest {manifest_id} is missing: nothing to convert")
    if not record.is_open:
        return ConversionDecision(ConversionKind.SKIP, f"manifest {manifest_id} is {record.status}: nothing to convert")
    if result_exists:
        return ConversionDecision(
            ConversionKind.ALREADY_DONE, f"manifest {manifest_id} already has its result; not converting again"
        )
    if active_run_id:
        return ConversionDecision(
            ConversionKind.WAIT_FOR,
            f"manifest {manifest_id}: run {active_run_id} is still active; waiting for it",
            active_run_id,
        )
    return ConversionDecision(ConversionKind.CONVERT, f"manifest {manifest_id}: starting a conversion run")


def holds_unfinished_claim(record: ManifestRecord | None, *, result_exists: bool) -> bool:
    """Whether a conversion's callback may act on the manifest: claimed, not being compensated, no result yet.

    Callbacks fire twice, early or never; whatever they find otherwise is the
    finaliser's or the sweeper's to handle, so they do nothing.
    """
    return record is not None and record.is_open and not result_exists

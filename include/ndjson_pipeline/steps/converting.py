"""Converting one manifest: the conversion side of the saga, decided from recorded state, driven through a port.

The runs themselves (Glue's, or the same script on local Spark) sit behind
``ConversionRuns``; the Airflow side supplies the implementation, chosen once.
Everything a conversion task, its callbacks, the finaliser, the sweeper and
usage recording do with runs goes through that port, so the whole protocol is
here and runs without Airflow:

- ``convert``: what a conversion task does for its manifest, on every try and
  clear alike. It follows the manifest's redo chain (``redoing``), then decides
  from the manifest's ledger record, its result object and the runs carrying
  its id (``decide_conversion``): skip a closed manifest, done when the result
  exists, wait for a run still active, or start one. A compensation may begin
  between the decision and the start: the lease extension before the start and
  the run's attachment after it are both refused once the manifest is fenced,
  and a run found too late is stopped and its output removed at once.
- ``rebuild``: the same for a reprocess's conversion of a SUCCEEDED manifest
  into its rebuild layout, or a compaction's run of a manifest of Parquet
  files into its layout (no claim, no lease, no redo).
- ``clean_up_before_retry``: the retry callback's fast path: stop the failed
  try's run and remove its partial output, unless a newer try took over.
- ``unfinished_claim``: whether a callback may act at all.
- ``request_stop``: what killing a conversion task asks for.

Every question is keyed by the manifest id (never by task, try or map index),
so a retry or a clear asks the same question as the first try: a manifest is
converted at most once at a time and never again once it is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ndjson_pipeline.conversion import JobArguments
from ndjson_pipeline.ledger import IllegalTransitionError, Ledger, ManifestRecord, ManifestState
from ndjson_pipeline.manifest import JobResult, ManifestRef
from ndjson_pipeline.outputs import discard_output, read_result
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.redoing import manifest_to_convert, manifest_to_finalise
from ndjson_pipeline.steps.reprocessing import RebuildRef
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import Usage

log = logging.getLogger(__name__)


class ConversionRuns(Protocol):
    """The runs that convert manifests, found by the manifest they convert (its ``--manifest_id``).

    An implementation is bound to one lake root: the pipeline's, or one reprocess's rebuild layout, so the
    pipeline and a reprocess never see each other's runs of a manifest.
    """

    @property
    def synchronous(self) -> bool:
        """Whether a run has ended when ``start`` returns (local Spark); Glue's runs go on and are waited for."""
        ...

    def active_run_of(self, manifest_id: str) -> str | None:
        """The id of a run of the manifest that has not ended, or None."""
        ...

    def start(self, arguments: JobArguments) -> str:
        """Start one run of ``arguments`` (its manifest); its id."""
        ...

    def stop(self, manifest_id: str) -> None:
        """Stop every active run of the manifest and wait until none is active, so its output is final."""
        ...

    def request_stop(self, manifest_id: str) -> None:
        """Ask for the manifest's active run to stop, without waiting."""
        ...

    def billed(self, manifest_id: str, result: JobResult | None) -> Usage:
        """What the manifest's runs were billed (``result``: its job result, when it has one)."""
        ...


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


class Outcome(StrEnum):
    SKIPPED = "skipped"  # nothing converts the manifest (any more); the task is skipped
    DONE = "done"  # its result exists, or a synchronous run just wrote it
    RUNNING = "running"  # a run is converting it: wait for ``run_id`` to end


@dataclass(frozen=True)
class Conversion:
    """What a conversion task did, for the manifest it worked on (a redo's, after a clear)."""

    outcome: Outcome
    manifest_id: str
    reason: str
    run_id: str | None = None


def convert(
    ledger: Ledger, storage: Storage, settings: PipelineSettings, ref: ManifestRef, runs: ConversionRuns
) -> Conversion:
    """What a conversion task of ``ref`` does (see the module docstring); the same on every try and clear."""
    ref = manifest_to_convert(ledger, storage, settings, ref)  # a cleared task of a compensated manifest: its redo
    record = ledger.get_manifest(ref.manifest_id)
    active_run_id = runs.active_run_of(ref.manifest_id)
    result_exists = read_result(storage, settings, ref) is not None
    decision = decide_conversion(ref.manifest_id, record, result_exists=result_exists, active_run_id=active_run_id)
    log.info(
        "%s",
        decision.reason,
        extra={"manifest_id": ref.manifest_id, "day": ref.day, "decision": str(decision.kind)},
    )
    if decision.kind is ConversionKind.SKIP:
        if active_run_id and record is not None and record.state is not ManifestState.SUCCEEDED:
            return _give_up(storage, settings, ref, runs, f"run {active_run_id} converts a manifest given up")
        return Conversion(Outcome.SKIPPED, ref.manifest_id, decision.reason)
    if decision.kind is ConversionKind.ALREADY_DONE:
        return Conversion(Outcome.DONE, ref.manifest_id, decision.reason)
    try:
        ledger.extend_lease(ref.manifest_id, settings.lease_seconds)
    except IllegalTransitionError as exc:
        return Conversion(Outcome.SKIPPED, ref.manifest_id, f"manifest {ref.manifest_id}: {exc}; not converting")
    run_id = decision.run_id or runs.start(settings.job_arguments(ref))
    if not ledger.attach_run(ref.manifest_id, run_id):
        return _give_up(storage, settings, ref, runs, f"run {run_id} ran while its manifest was being compensated")
    if runs.synchronous:
        return Conversion(
            Outcome.DONE, ref.manifest_id, f"manifest {ref.manifest_id} converted by run {run_id}", run_id
        )
    return Conversion(Outcome.RUNNING, ref.manifest_id, decision.reason, run_id)


def _give_up(
    storage: Storage, settings: PipelineSettings, ref: ManifestRef, runs: ConversionRuns, why: str
) -> Conversion:
    """A run of a manifest no longer claimed: stop it and remove whatever it wrote."""
    runs.stop(ref.manifest_id)
    removed = discard_output(storage, settings, ref)
    reason = f"manifest {ref.manifest_id} was compensated: {why}; run stopped, {removed} output objects removed"
    log.warning("%s", reason, extra={"manifest_id": ref.manifest_id, "day": ref.day, "objects_removed": removed})
    return Conversion(Outcome.SKIPPED, ref.manifest_id, reason)


def rebuild(storage: Storage, settings: PipelineSettings, ref: RebuildRef, runs: ConversionRuns) -> Conversion:
    """What a reprocess's (or a compaction's) run of one manifest does: done, wait for its run, or start one.

    ``runs`` are the work layout's. A retry after a failed run starts another:
    the job replaces whatever an earlier run of the manifest published there.
    """
    layout = ref.work_layout(settings.layout)
    manifest_id = ref.manifest.manifest_id
    if read_result(storage, settings, ref.manifest, layout) is not None:
        return Conversion(
            Outcome.DONE, manifest_id, f"manifest {manifest_id} is rebuilt already under {layout.lake_root}"
        )
    active_run_id = runs.active_run_of(manifest_id)
    run_id = active_run_id or runs.start(settings.job_arguments(ref.manifest, layout, ref.kind))
    reason = f"rebuilding manifest {manifest_id} under {layout.lake_root} with run {run_id}"
    return Conversion(Outcome.DONE if runs.synchronous else Outcome.RUNNING, manifest_id, reason, run_id)


def unfinished_claim(
    ledger: Ledger, storage: Storage, settings: PipelineSettings, ref: ManifestRef
) -> ManifestRecord | None:
    """The manifest's record while it holds an unfinished claim (claimed, not being compensated, no result), else None.

    Callbacks act only then: they fire twice, early or never, and whatever they
    find otherwise is the finaliser's or the sweeper's to handle.
    """
    record = ledger.get_manifest(ref.manifest_id)
    result_exists = read_result(storage, settings, ref) is not None
    if record is not None and record.is_open and not result_exists:
        return record
    state = record.status if record else "unknown to the ledger"
    found = f"{state} with a result" if result_exists else state
    log.info(
        "manifest %s is %s: the callback leaves it alone",
        ref.manifest_id,
        found,
        extra={"manifest_id": ref.manifest_id, "day": ref.day},
    )
    return None


def clean_up_before_retry(
    ledger: Ledger, storage: Storage, settings: PipelineSettings, ref: ManifestRef, runs: ConversionRuns
) -> int:
    """Stop a failed try's run and remove its partial output before the retry; the objects removed.

    Airflow runs the retry callback after it reported the try's state, so the
    retry may already be under way. A try extends the manifest's lease before it
    starts a run: a lease that moved while the run was being stopped means a
    newer try owns whatever is there now, and it is left alone.
    """
    seen = unfinished_claim(ledger, storage, settings, ref)
    if seen is None:
        return 0
    runs.stop(ref.manifest_id)
    # Ask again once the run has stopped: it may have finished first, or a newer try may have started one.
    now = unfinished_claim(ledger, storage, settings, ref)
    if now is None or runs.active_run_of(ref.manifest_id) is not None:
        return 0
    if now.lease_expires_at != seen.lease_expires_at:
        log.info(
            "manifest %s: a newer try took the claim meanwhile; its output is left alone",
            ref.manifest_id,
            extra={"manifest_id": ref.manifest_id, "day": ref.day},
        )
        return 0
    removed = discard_output(storage, settings, ref)
    log.info(
        "manifest %s: run stopped, %d partial output objects removed before the retry",
        ref.manifest_id,
        removed,
        extra={"manifest_id": ref.manifest_id, "day": ref.day, "objects_removed": removed},
    )
    return removed


def request_stop(ledger: Ledger, ref: ManifestRef, runs: ConversionRuns) -> None:
    """A killed conversion task asks for its run to stop (the finaliser and the sweeper make sure it ends).

    A cleared conversion may be running the manifest's redo: the run of the manifest at the chain's end is meant.
    """
    runs.request_stop(manifest_to_finalise(ledger, ref).manifest_id)

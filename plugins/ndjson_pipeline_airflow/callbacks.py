"""The conversion's callbacks: the fast path of the saga, never its guarantee.

``on_retry_callback`` stops the failed try's Glue run and removes its partial
output, so the retry starts from a clean slate; ``on_failure_callback`` alerts
once, with the manifest id and its files, when the conversion failed for good.

Airflow fires callbacks best effort: twice, early (while retries remain), late
(from another process) or not at all when a worker is killed. So each one acts
only while the ledger says the manifest still holds an unfinished claim
(claimed, not being compensated, no result: ``holds_unfinished_claim``), and
does nothing otherwise. What a callback leaves undone is done anyway: the
finaliser runs after every conversion (trigger rule ``all_done``) and
compensates, and the sweeper repairs every claim whose lease ran out.
"""

from __future__ import annotations

import logging
from typing import Any

from ndjson_pipeline.ledger import Ledger, ManifestRecord
from ndjson_pipeline.manifest import ManifestRef
from ndjson_pipeline.outputs import discard_output, read_result
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps.converting import holds_unfinished_claim
from ndjson_pipeline.storage import Storage
from ndjson_pipeline_airflow import monitoring
from ndjson_pipeline_airflow.hooks.glue import ManifestGlueJobHook
from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
from ndjson_pipeline_airflow.hooks.storage import StorageHook
from ndjson_pipeline_airflow.settings_loader import load_settings

log = logging.getLogger(__name__)


def stop_run_before_retry(context: Any) -> None:
    """``on_retry_callback`` of the conversion: stop its Glue run, then remove its partial output.

    Airflow runs it after it reported the try's state, so the retry may already
    be under way. A try extends the manifest's lease before it starts a run: a
    lease that moved while this callback stopped the run means a newer try owns
    whatever is there now, and it is left alone.
    """
    settings, ref, aws_conn_id = _of(context)
    ledger = LedgerHook(aws_conn_id=aws_conn_id).get_ledger(settings)
    storage = StorageHook(aws_conn_id=aws_conn_id).get_storage()
    seen = _unfinished_claim(ledger, storage, settings, ref)
    if seen is None:
        return
    glue = None
    if settings.glue_runner != "local":
        glue = ManifestGlueJobHook(
            job_name=settings.names.glue_job, lake_root=settings.layout.lake_root, aws_conn_id=aws_conn_id
        )
        glue.stop_runs_of(ref.manifest_id)
    # Ask again once the run has stopped: it may have finished first, or a newer try may have started one.
    now = _unfinished_claim(ledger, storage, settings, ref)
    if now is None or (glue and glue.is_active(ref.manifest_id)):
        return
    if now.lease_expires_at != seen.lease_expires_at:
        log.info("manifest %s: a newer try took the claim meanwhile; its output is left alone", ref.manifest_id)
        return
    removed = discard_output(storage, settings, ref)
    log.info("manifest %s: run stopped, %d partial output objects removed before the retry", ref.manifest_id, removed)


def alert_conversion_failed(context: Any) -> None:
    """``on_failure_callback`` of the conversion: alert once, naming the manifest and its files."""
    settings, ref, aws_conn_id = _of(context)
    ledger = LedgerHook(aws_conn_id=aws_conn_id).get_ledger(settings)
    storage = StorageHook(aws_conn_id=aws_conn_id).get_storage()
    record = _unfinished_claim(ledger, storage, settings, ref)
    if record is None or record.failure_alerted_at:
        return
    reason = str(context.get("exception") or "the conversion task failed")
    monitoring.alert_conversion_failed(settings, ref.manifest_id, ledger.identities_of(record), reason, aws_conn_id)
    ledger.mark_failure_alerted(ref.manifest_id)


def _of(context: Any) -> tuple[PipelineSettings, ManifestRef, str | None]:
    task = context["task"]
    return load_settings(), ManifestRef.from_dict(task.manifest), task.aws_conn_id


def _unfinished_claim(
    ledger: Ledger, storage: Storage, settings: PipelineSettings, ref: ManifestRef
) -> ManifestRecord | None:
    """The manifest's record while it holds an unfinished claim, else None (and the callback does nothing)."""
    record = ledger.get_manifest(ref.manifest_id)
    result_exists = read_result(storage, settings, ref) is not None
    if record is not None and holds_unfinished_claim(record, result_exists=result_exists):
        return record
    state = record.status if record else "unknown to the ledger"
    found = f"{state} with a result" if result_exists else state
    log.info("manifest %s is %s: the callback leaves it alone", ref.manifest_id, found)
    return None

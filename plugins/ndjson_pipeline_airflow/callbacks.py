"""The conversion's callbacks: the fast path of the saga, never its guarantee.

``on_retry_callback`` stops the failed try's run and removes its partial
output, so the retry starts from a clean slate; ``on_failure_callback`` alerts
once, with the manifest id and its files, when the conversion failed for good.

Airflow fires callbacks best effort: twice, early (while retries remain), late
(from another process) or not at all when a worker is killed. So each one acts
only while the ledger says the manifest still holds an unfinished claim
(claimed, not being compensated, no result: ``converting.unfinished_claim``),
and does nothing otherwise. What a callback leaves undone is done anyway: the
finaliser runs after every conversion (trigger rule ``all_done``) and
compensates, and the sweeper repairs every claim whose lease ran out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ndjson_pipeline.manifest import ManifestRef
    from ndjson_pipeline.settings import PipelineSettings

# DAG files import this module (through the conversion's task group): what a callback needs is imported when it runs.


def stop_run_before_retry(context: Any) -> None:
    """``on_retry_callback`` of the conversion: stop its run, then remove its partial output (``converting``)."""
    from ndjson_pipeline.steps import converting
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook
    from ndjson_pipeline_airflow.runs import conversion_runs

    settings, ref, aws_conn_id = _of(context)
    ledger = LedgerHook(aws_conn_id=aws_conn_id).get_ledger(settings)
    storage = StorageHook(aws_conn_id=aws_conn_id).get_storage()
    runs = conversion_runs(settings, aws_conn_id=aws_conn_id)
    converting.clean_up_before_retry(ledger, storage, settings, ref, runs)


def alert_conversion_failed(context: Any) -> None:
    """``on_failure_callback`` of the conversion: alert once, naming the manifest and its files."""
    from ndjson_pipeline.steps import converting
    from ndjson_pipeline_airflow import monitoring
    from ndjson_pipeline_airflow.hooks.ledger import LedgerHook
    from ndjson_pipeline_airflow.hooks.storage import StorageHook

    settings, ref, aws_conn_id = _of(context)
    ledger = LedgerHook(aws_conn_id=aws_conn_id).get_ledger(settings)
    storage = StorageHook(aws_conn_id=aws_conn_id).get_storage()
    record = converting.unfinished_claim(ledger, storage, settings, ref)
    if record is None or record.failure_alerted_at:
        return
    reason = str(context.get("exception") or "the conversion task failed")
    monitoring.alert_conversion_failed(settings, ref.manifest_id, ledger.identities_of(record), reason, aws_conn_id)
    ledger.mark_failure_alerted(ref.manifest_id)


def _of(context: Any) -> tuple[PipelineSettings, ManifestRef, str | None]:
    from ndjson_pipeline.manifest import ManifestRef
    from ndjson_pipeline_airflow.settings_loader import load_settings

    task = context["task"]
    return load_settings(), ManifestRef.from_dict(task.manifest), task.aws_conn_id

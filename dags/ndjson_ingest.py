"""Ingest: S3 notifications -> ledger -> sweep -> (enough work?) -> manifests -> one Glue run per manifest -> finalise.

Runs every few minutes; runs never overlap, and every step is safe to retry. The
sweep and the sensor cover every day the ledger lists as open, however old.
Settings are read at run time from the Airflow Variable ``ndjson_pipeline_settings``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import dag

from ndjson_pipeline_airflow.sensors import PendingWorkSensor
from ndjson_pipeline_airflow.tasks import (
    conversion_slots,
    convert_manifest,
    intake,
    plan_manifests,
    sweep_expired_claims,
)

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="ndjson_ingest",
    schedule=os.environ.get("NDJSON_PIPELINE_INGEST_SCHEDULE", "*/5 * * * *"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "ingest"],
    doc_md=__doc__,
)
def ndjson_ingest():
    # Every open day is swept and watched, whatever became of the task before: a failed intake or an
    # unrepairable manifest never stops the conversion of work already in the ledger.
    ready_days = PendingWorkSensor(task_id="wait_for_pending_work", trigger_rule="all_done")
    intake() >> sweep_expired_claims() >> ready_days
    manifests = plan_manifests(ready_days.output)
    convert_manifest.partial(max_conversions=conversion_slots("ingest")).expand(manifest=manifests)


ndjson_ingest()

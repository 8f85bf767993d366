"""Ingest: sweep -> (enough work in the ledger?) -> manifests -> one Glue run per manifest -> finalise.

Runs every minute, and up to ``MAX_ACTIVE_RUNS`` runs overlap: while one run's
conversions are still running, the next run's sensor is already waiting for the
next batch, so a long conversion never holds up the files behind it. That is
safe because each file is claimed by exactly one manifest (a conditional
write), and every step is safe to retry. A ready batch wakes one of the waiting
runs (its sensor takes the day's wake, a conditional write), whose planner
claims it and frees the wake for the next batch. Together the runs never start more
conversions than ``conversion_slots("ingest")``. The files come from the
ledger, where the ``ndjson_intake`` DAG puts them. The sweep and the sensor
cover every day the ledger lists as open, however old. Settings are read at run
time from the Airflow Variable ``ndjson_pipeline_settings``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import dag

from ndjson_pipeline_airflow.sensors import PendingWorkSensor
from ndjson_pipeline_airflow.tasks import (
    convert_manifest,
    plan_manifests,
    sweep_expired_claims,
)

# Runs whose conversions overlap; more only add waiting sensors, the conversion slots bound the Glue runs.
MAX_ACTIVE_RUNS = 4

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="ndjson_ingest",
    schedule=os.environ.get("NDJSON_PIPELINE_INGEST_SCHEDULE", "* * * * *"),
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "ingest"],
    doc_md=__doc__,
)
def ndjson_ingest():
    # Every open day is swept and watched, whatever became of the sweep: an unrepairable manifest never
    # stops the conversion of work already in the ledger.
    ready_days = PendingWorkSensor(task_id="wait_for_pending_work", trigger_rule="all_done")
    sweep_expired_claims() >> ready_days
    manifests = plan_manifests(ready_days.output, woken=True)
    convert_manifest.partial(dag_kind="ingest").expand(manifest=manifests)


ndjson_ingest()

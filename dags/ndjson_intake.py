"""Intake: S3 notifications -> ledger, every minute, apart from the conversions.

Its own DAG so that draining the queue never holds up a conversion and a long
conversion never holds up the queue: the ingest DAG converts what the ledger
holds, whenever this DAG put it there. Runs never overlap (one consumer is
enough for 10 messages per receive); a run stops when the queue is empty or
``intake_time_budget_seconds`` is spent, whichever comes first. Settings are
read at run time from the Airflow Variable ``ndjson_pipeline_settings``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import dag

from ndjson_pipeline_airflow.tasks import intake


@dag(
    dag_id="ndjson_intake",
    schedule=os.environ.get("NDJSON_PIPELINE_INTAKE_SCHEDULE", "* * * * *"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
    },
    tags=["ndjson-pipeline", "intake"],
    doc_md=__doc__,
)
def ndjson_intake():
    intake()


ndjson_intake()

"""Metadata database hygiene: purge what Airflow's metadata database holds beyond ``metadata_retention_days``.

Daily, and from the trigger form (``dry_run`` counts what would go and deletes
nothing). The intake and ingest DAGs run every minute: about 3,000 DAG runs and
tens of thousands of task instances a day, which slow the scheduler and the UI as
they pile up. Runs ``airflow db clean`` (DAG runs, task instances and their
history, XComs, the audit log, jobs, import errors, triggers, old DAG versions...)
where the database is reachable: on MWAA through its CLI endpoint, as MWAA
documents for Airflow 3. Rows of unfinished runs are never purged: the horizon
moves back to the earliest start among them. See docs/operating.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from ndjson_pipeline_airflow.db_cleanup import purge_metadata_database

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(hours=1),
}


@dag(
    dag_id="ndjson_db_cleanup",
    # Away from the end-of-day DAG (00:30) and its conversions.
    schedule="15 3 * * *",
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "maintenance"],
    params={
        "dry_run": Param(False, type="boolean", description="Count the rows that would be purged; delete nothing."),
    },
    doc_md=__doc__,
)
def ndjson_db_cleanup():
    purge_metadata_database()


ndjson_db_cleanup()

"""End of day: reconcile the day's listing, repair claims, flush everything pending, convert, then report.

Scheduled daily for the previous day; trigger it from the UI with the ``day``
param for any day, or backfill a range. Re-running a day redoes only what is
not yet terminal and never duplicates output.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from ndjson_pipeline_airflow.tasks import (
    convert_manifest,
    plan_manifests,
    reconcile,
    report_day,
    resolve_day,
    sweep_expired_claims,
)

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=60),
}


@dag(
    dag_id="ndjson_end_of_day",
    schedule="30 0 * * *",
    catchup=False,
    max_active_runs=4,
    dagrun_timeout=timedelta(hours=6),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "end-of-day"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="Day to close (YYYY-MM-DD, UTC). Empty: the day before the run's logical date.",
        )
    },
    doc_md=__doc__,
)
def ndjson_end_of_day():
    days = resolve_day()
    reconciled = reconcile(days)
    swept = sweep_expired_claims(days)
    # A sweep that could not repair one manifest must not keep the day's flush from running.
    manifests = plan_manifests.override(trigger_rule="all_done")(days)
    reconciled >> swept >> manifests
    converted = convert_manifest.partial(dag_kind="end_of_day").expand(manifest=manifests)
    converted >> report_day(days)


ndjson_end_of_day()

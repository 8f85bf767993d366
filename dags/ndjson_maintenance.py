"""Maintenance: an operator's action on one day's files, triggered by hand from the UI's trigger form.

- ``requeue_failed``: FAILED files (attempts used up) of ``day``, or of ``manifest_id``, back to PENDING
  with a fresh attempt count, once their cause is fixed.
- ``replay_quarantined``: files of ``day`` a conversion quarantined whole (undecodable, for instance)
  back to PENDING after a fix; superseded versions and intake rejections never.

``dry_run`` (on by default) reports what would change and changes nothing. A real run
moves each file by a conditional ledger write and leaves a record (this run, what changed)
that the day's report lists. The next ingest or end-of-day run converts the files.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from ndjson_pipeline_airflow.maintenance import maintain

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@dag(
    dag_id="ndjson_maintenance",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "maintenance"],
    params={
        "action": Param(
            "requeue_failed",
            type="string",
            enum=["requeue_failed", "replay_quarantined"],
            description="requeue_failed: FAILED files back to PENDING; replay_quarantined: files a conversion "
            "quarantined whole back to PENDING.",
        ),
        "day": Param(
            type="string",
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="The day whose files to act on (YYYY-MM-DD, UTC).",
        ),
        "manifest_id": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{8}-[0-9a-f]{20}$",
            description="Only this manifest's files (requeue_failed); empty: every file of the day.",
        ),
        "dry_run": Param(True, type="boolean", description="Report what would change; change nothing."),
    },
    doc_md=__doc__,
)
def ndjson_maintenance():
    maintain()


ndjson_maintenance()

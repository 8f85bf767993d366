"""Reprocess or compact: rebuild the Parquet of a day (or a range of days), and swap it in whole.

``action`` ``reprocess`` (the default) converts the day again from its raw files; ``compact`` merges the
day's small Parquet files into target-sized ones (a closed day; rows, lineage and counts unchanged).

For a fix of the job, a new schema or new conversion settings, after they are
deployed. Each SUCCEEDED manifest of the day is converted again, under its own
id, into a separate layout; then, day by day, the catalog's partitions switch
to the rebuilt files in one update each, the lake's files of those manifests are
replaced, the ledger's row counts restated, and the partitions switch back.
Readers of the catalog see the old day or the new one, never a mix or a gap.
Lines quarantined inside converted files are read again; files quarantined
whole are returned by ``ndjson_maintenance`` (``replay_quarantined``) instead.

``dry_run`` (on by default) reports, per day, the manifests, files and rows a
real run would rebuild, and changes nothing. A day whose raw files may have
expired (older than the landing retention) is refused. A real run leaves a
record per day, listed by the day report. Clearing a failed ``rebuild`` converts
that manifest again; clearing ``swap_days`` swaps again (safe to repeat).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from ndjson_pipeline_airflow.operators import REBUILD_SLOTS, RebuildGlueJobOperator
from ndjson_pipeline_airflow.reprocess import plan_rebuilds, swap_days

DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=60),
}


@dag(
    dag_id="ndjson_reprocess",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    default_args=DEFAULT_ARGS,
    tags=["ndjson-pipeline", "maintenance"],
    params={
        "action": Param(
            "reprocess",
            type="string",
            enum=["reprocess", "compact"],
            description="reprocess: convert the day again from its raw files; compact: merge its small Parquet "
            "files into target-sized ones.",
        ),
        "day": Param(
            type="string",
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="The (first) landing day to reprocess (YYYY-MM-DD, UTC).",
        ),
        "last_day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="The last day of a range (inclusive, at most 31 days); empty: just 'day'.",
        ),
        "dry_run": Param(True, type="boolean", description="Report what would be rebuilt; change nothing."),
    },
    doc_md=__doc__,
)
def ndjson_reprocess():
    rebuilds = plan_rebuilds()
    rebuilt = RebuildGlueJobOperator.partial(
        task_id="rebuild",
        deferrable=True,
        map_index_template="{{ manifest_id }}",
        max_active_tis_per_dag=REBUILD_SLOTS,
    ).expand(manifest=rebuilds)
    rebuilt >> swap_days(rebuilds)


ndjson_reprocess()

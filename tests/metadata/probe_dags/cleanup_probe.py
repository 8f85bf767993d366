"""The DAG whose runs the metadata cleanup test seeds: two tasks, so a run can be half done."""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag


@dag(dag_id="cleanup_probe", schedule="@daily", catchup=False, tags=["test"])
def cleanup_probe():
    EmptyOperator(task_id="first") >> EmptyOperator(task_id="second")


cleanup_probe()

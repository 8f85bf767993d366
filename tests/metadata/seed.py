"""Seed a metadata database with runs of ``cleanup_probe`` of given ages: ``python -m tests.metadata.seed SPEC``.

Run in a child process whose Airflow configuration points at the database (this
test session's own Airflow is configured for SQLite). SPEC is JSON::

    {"now": iso, "runs": [{"run_id", "state", "run_type", "started" (days ago or null),
                           "tasks": {task_id: [state, started days ago]}, "xcom": days ago}],
     "logs": [days ago, ...]}

Rows are made with Airflow's own models, then given their ages.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

from airflow.models.dag_version import DagVersion
from airflow.models.dagrun import DagRun
from airflow.models.log import Log
from airflow.models.serialized_dag import SerializedDagModel
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.types import DagRunTriggeredByType, DagRunType

DAG_ID = "cleanup_probe"


def seed(spec: dict) -> None:
    now = datetime.fromisoformat(spec["now"])

    def ago(days: float | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    with create_session() as session:
        dag = SerializedDagModel.get(DAG_ID, session=session).dag
        version = DagVersion.get_latest_version(DAG_ID, session=session)
        for number, run in enumerate(spec["runs"]):
            logical_date = now - timedelta(days=365 - number)  # distinct, and none in the future
            dag_run = DagRun(
                dag_id=DAG_ID,
                run_id=run["run_id"],
                logical_date=logical_date,
                run_after=logical_date,
                data_interval=(logical_date, logical_date),
                queued_at=ago(run["started"]) or now,
                start_date=ago(run["started"]),
                state=run["state"],
                run_type=DagRunType(run["run_type"]),
                triggered_by=DagRunTriggeredByType.TIMETABLE,
            )
            dag_run.created_dag_version_id = version.id
            session.add(dag_run)
            session.flush()
            for task_id, (state, started) in run["tasks"].items():
                ti = TaskInstance(dag.get_task(task_id), dag_version_id=version.id, run_id=run["run_id"], state=state)
                ti.start_date = ago(started)
                session.add(ti)
            session.flush()
            if run.get("xcom") is not None:
                session.add(
                    XComModel(
                        dag_run_id=dag_run.id,
                        task_id="first",
                        map_index=-1,
                        key="return_value",
                        dag_id=DAG_ID,
                        run_id=run["run_id"],
                        value=json.dumps({"run": run["run_id"]}),
                        timestamp=ago(run["xcom"]),
                    )
                )
        for days in spec["logs"]:
            log = Log(event="cleanup-probe", dag_id=DAG_ID)
            log.dttm = ago(days)
            session.add(log)


if __name__ == "__main__":
    seed(json.loads(sys.argv[1]))

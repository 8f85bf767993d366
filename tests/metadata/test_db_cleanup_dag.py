"""The cleanup DAG on `make ui`'s stack: its task, in a real Airflow 3 task process with no database access, purges.

The task process has the metadata database's URL replaced by the task runner;
on the local stack the task gets the database through the connection
``tools.local_airflow`` writes, as MWAA's web server would run the command.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tools.ui_stack import airflow, tail_logs, ui_stack, wait_for_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "ndjson_db_cleanup"


def _probe_logs(database: str) -> list[int]:
    engine = sa.create_engine(database)
    with engine.begin() as db:
        ages = db.execute(sa.text("SELECT now() - dttm FROM log WHERE event = 'cleanup-probe'")).scalars()
        days = sorted(age.days for age in ages)
    engine.dispose()
    return days


def test_the_cleanup_dags_task_purges_the_stacks_database(aws_endpoint, tmp_path):
    with ui_stack(tmp_path / "stack", name_prefix=f"dbc-{uuid.uuid4().hex[:8]}", endpoint=aws_endpoint) as ui:
        database = ui.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        engine = sa.create_engine(database)
        with engine.begin() as db:
            for days in (60, 1):
                db.execute(
                    sa.text(
                        "INSERT INTO log (dttm, event) VALUES (now() - make_interval(days => :days), 'cleanup-probe')"
                    ),
                    {"days": days},
                )
        engine.dispose()
        airflow(ui.env, "dags", "unpause", DAG_ID)
        airflow(ui.env, "dags", "trigger", DAG_ID, "--run-id", "cleanup-test")
        assert wait_for_run(ui.env, DAG_ID, "cleanup-test", 600) == "success", tail_logs(ui.logs)
        path = (
            f"/api/v2/dags/{DAG_ID}/dagRuns/cleanup-test/taskInstances/purge_metadata_database/xcomEntries/return_value"
        )
        record = ui.api_get(path)["value"]
        assert _probe_logs(database) == [1]
    assert record["retention_days"] == 30
    assert record["held_back_by"] is None
    assert record["rows"]["log"] >= 1
    assert {"dag_run", "task_instance", "xcom", "job"} <= set(record["rows"])

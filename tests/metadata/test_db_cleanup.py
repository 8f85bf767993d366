"""The metadata cleanup on a real, migrated PostgreSQL metadata database: old rows go, recent and unfinished ones stay.

A throwaway PostgreSQL cluster gets ``airflow db migrate`` and the probe DAG
(``airflow dags reserialize``); runs of it are seeded with their task instances,
XComs and audit-log rows at given ages. The cleanup is the DAG's own code path,
``purge_metadata`` with the local stack's ``AirflowAdmin``: Airflow's REST API on
a real API server, and ``airflow db clean`` with the database. On MWAA the same
requests and the same command go through ``InvokeRestApi`` and the CLI endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ndjson_pipeline.metadata_cleanup import purge_metadata
from ndjson_pipeline_airflow.hooks.airflow_admin import LocalAirflowAdmin
from tools.local_airflow import DEFAULT_PASSWORD, local_airflow_connection_env, login_environment
from tools.local_stack import REPO_ROOT, free_port
from tools.ui_stack import AirflowProcesses, airflow, postgres_database, scheduler_environment, tail_logs, wait_for_api

RETENTION_DAYS = 30
NOW = datetime.now(UTC)
PROBE_DAGS = Path(__file__).with_name("probe_dags")
# run_id: (state, run type, started days ago, {task: (state, started days ago)}, XCom days ago)
RUNS = {
    "old": ("success", "scheduled", 60, {"first": ("success", 60), "second": ("success", 60)}, 60),
    "old_manual": ("success", "manual", 70, {"first": ("success", 70), "second": ("success", 70)}, 70),
    "between": ("success", "scheduled", 40, {"first": ("success", 40), "second": ("success", 40)}, 40),
    # Started before the retention and still going.
    "running": ("running", "scheduled", 45, {"first": ("success", 45), "second": ("running", 45)}, 45),
    # An old run cleared since: queued again (no start date), its finished task instance keeps its old start.
    "cleared": ("queued", "scheduled", None, {"first": ("success", 50), "second": (None, None)}, 50),
    "recent": ("success", "scheduled", 2, {"first": ("success", 2), "second": ("success", 2)}, 2),
}
LOG_AGES = [80, 1]


def _spec() -> dict:
    runs = [
        {"run_id": run_id, "state": state, "run_type": run_type, "started": started, "tasks": tasks, "xcom": xcom}
        for run_id, (state, run_type, started, tasks, xcom) in RUNS.items()
    ]
    return {"now": NOW.isoformat(), "runs": runs, "logs": LOG_AGES}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory) -> tuple[str, LocalAirflowAdmin]:
    """A migrated, seeded PostgreSQL metadata database and the cleanup's way to it (an API server runs on it)."""
    home = tmp_path_factory.mktemp("airflow-home")
    api_port = free_port()
    with postgres_database() as database:
        env = {
            **os.environ,
            **scheduler_environment(home, database, api_port),
            **login_environment(home, DEFAULT_PASSWORD),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROBE_DAGS),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "include"), str(REPO_ROOT / "plugins")]),
        }
        airflow(env, "db", "migrate", timeout=600)
        airflow(env, "dags", "reserialize", timeout=300)
        seeded = subprocess.run(
            [sys.executable, "-m", "tests.metadata.seed", json.dumps(_spec())],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        processes = AirflowProcesses(env, api_port, home)
        processes.start("api-server")
        try:
            wait_for_api(f"http://127.0.0.1:{api_port}", processes.running, timeout=180)
            with pytest.MonkeyPatch.context() as patch:
                connection = local_airflow_connection_env(f"http://127.0.0.1:{api_port}", DEFAULT_PASSWORD, database)
                for name, value in connection.items():
                    patch.setenv(name, value)
                yield database, LocalAirflowAdmin()
        except Exception:
            print(tail_logs(home))
            raise
        finally:
            processes.stop()


def _rows(database: str) -> dict[str, object]:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as db:
            runs = db.execute(sa.text("SELECT run_id FROM dag_run WHERE dag_id = 'cleanup_probe'")).scalars()
            tis = db.execute(sa.text("SELECT run_id, task_id FROM task_instance WHERE dag_id = 'cleanup_probe'"))
            xcoms = db.execute(sa.text("SELECT run_id FROM xcom WHERE dag_id = 'cleanup_probe'")).scalars()
            logs = db.execute(sa.text("SELECT dttm FROM log WHERE event = 'cleanup-probe'")).scalars()
            return {
                "runs": set(runs),
                "task_instances": {(run_id, task_id) for run_id, task_id in tis},
                "xcoms": set(xcoms),
                "log_ages": sorted(round((NOW - dttm).total_seconds() / 86400) for dttm in logs),
            }
    finally:
        engine.dispose()


def _tasks(*run_ids: str) -> set[tuple[str, str]]:
    return {(run_id, task_id) for run_id in run_ids for task_id in RUNS[run_id][3]}


def _finish(database: str, *run_ids: str) -> None:
    engine = sa.create_engine(database)
    with engine.begin() as db:
        for run_id in run_ids:
            started = NOW - timedelta(days=50)
            db.execute(
                sa.text("UPDATE dag_run SET state = 'success', start_date = :started WHERE run_id = :run_id"),
                {"started": started, "run_id": run_id},
            )
            db.execute(
                sa.text("UPDATE task_instance SET state = 'success', start_date = :started WHERE run_id = :run_id"),
                {"started": started, "run_id": run_id},
            )
    engine.dispose()


def test_cleanup_purges_what_is_old_and_never_rows_of_unfinished_runs(metadata):
    database, admin = metadata
    seeded = _rows(database)
    assert seeded["runs"] == set(RUNS)

    # A dry run counts and deletes nothing.
    dry = purge_metadata(admin, NOW, RETENTION_DAYS, dry_run=True)
    assert dry.rows["dag_run"] == 2, dry.rows  # old and old_manual: the cleared run's 50 days hold the rest back
    assert _rows(database) == seeded

    # The cleared run's oldest task instance (50 days) holds the horizon back from 30 days.
    record = purge_metadata(admin, NOW, RETENTION_DAYS)
    assert record.held_back_by is not None
    assert (record.held_back_by.dag_id, record.held_back_by.run_id) == ("cleanup_probe", "cleared")
    assert record.horizon == (NOW - timedelta(days=50)).replace(microsecond=0)
    assert record.rows["dag_run"] == 2
    after = _rows(database)
    kept = {"between", "running", "cleared", "recent"}
    assert after["runs"] == kept
    assert after["task_instances"] == _tasks(*kept)
    assert after["xcoms"] == kept
    assert after["log_ages"] == [1]

    # Once those runs have finished, the next cleanup purges everything beyond the retention.
    _finish(database, "running", "cleared")
    final = purge_metadata(admin, NOW, RETENTION_DAYS)
    assert final.held_back_by is None
    assert final.horizon == (NOW - timedelta(days=RETENTION_DAYS)).replace(microsecond=0)
    last = _rows(database)
    assert last["runs"] == {"recent"}
    assert last["task_instances"] == _tasks("recent")
    assert last["xcoms"] == {"recent"}
    assert last["log_ages"] == [1]

"""The end-to-end run once more under real Airflow processes: scheduler, DAG processor, triggerer, API server.

``dag.test()`` runs triggers inline in its own process; here the sensor's
trigger must be imported and run by a real triggerer from the plugins folder
(the dags folder is not on its path), on a PostgreSQL metadata database as on
MWAA. The processes are the ones ``make ui`` runs (``tools/ui_stack.py``).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.e2e.conftest import land
from tests.e2e.expectations import assert_day_converted_exactly
from tools.local_stack import free_port
from tools.ui_stack import airflow, airflow_processes, postgres_database, scheduler_environment, tail_logs, wait_for_run

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def test_pipeline_under_real_scheduler_and_triggerer(pipeline_stack, tmp_path):
    stack = pipeline_stack
    sample = land(stack, files=6)
    api_port = free_port()
    logs = tmp_path / "logs"
    with postgres_database() as database:
        env = {**os.environ, **scheduler_environment(tmp_path / "home", database, api_port)}
        with airflow_processes(env, api_port, logs):
            for dag_id in ("ndjson_intake", "ndjson_ingest", "ndjson_end_of_day"):
                airflow(env, "dags", "unpause", dag_id)
            airflow(env, "dags", "trigger", "ndjson_intake", "--run-id", "e2e-intake")
            assert wait_for_run(env, "ndjson_intake", "e2e-intake", 600) == "success", tail_logs(logs)
            airflow(env, "dags", "trigger", "ndjson_ingest", "--run-id", "e2e-ingest")
            assert wait_for_run(env, "ndjson_ingest", "e2e-ingest", 600) == "success", tail_logs(logs)
            conf = json.dumps({"day": sample.day})
            airflow(env, "dags", "trigger", "ndjson_end_of_day", "--run-id", "e2e-eod", "-c", conf)
            assert wait_for_run(env, "ndjson_end_of_day", "e2e-eod", 600) == "success", tail_logs(logs)
    # The sensor deferred and the triggerer (not the worker) ran PendingWorkTrigger: its log lines are
    # in the sensor's task logs, written by the triggerer.
    sensor_logs = list((tmp_path / "home" / "logs").glob("dag_id=ndjson_ingest/**/task_id=wait_for_pending_work/*"))
    text = "\n".join(p.read_text(errors="replace") for p in sensor_logs if p.is_file())
    assert "DEFERRED" in text, sensor_logs
    assert "pending work ready" in text, text[-3000:]
    assert_day_converted_exactly(stack, sample)

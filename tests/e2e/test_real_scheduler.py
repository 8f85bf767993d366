"""The end-to-end run once more under real Airflow processes: scheduler, DAG processor, triggerer, API server.

``dag.test()`` runs triggers inline in its own process; here the sensor's
trigger must be imported and run by a real triggerer from the plugins folder
(the dags folder is not on its path), on a PostgreSQL metadata database as on
MWAA.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import land
from tests.e2e.expectations import assert_day_converted_exactly
from tools.local_stack import airflow_environment, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

PG_BIN = (
    next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
    if Path("/usr/lib/postgresql").exists()
    else None
)


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@pytest.fixture
def postgres():
    if PG_BIN is None:
        pytest.fail("PostgreSQL binaries not found under /usr/lib/postgresql (install postgresql-15)")
    # Postgres refuses to run as root: as root, the cluster belongs to the postgres user, outside pytest's 0700 dirs.
    data = Path(tempfile.mkdtemp(prefix="airflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            f"-p {port} -k {data} -h 127.0.0.1",
            "-l",
            str(data / "server.log"),
            "-w",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "airflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow"
    finally:
        subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"), capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


def _airflow(env, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, check=True, **kwargs
    )


def _wait_for_run(env, dag_id: str, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = _airflow(env, "dags", "list-runs", dag_id, "-o", "json").stdout
        # Log lines may precede the JSON document.
        runs = next((json.loads(line) for line in output.splitlines() if line.startswith("[")), [])
        state = next((r["state"] for r in runs if r["run_id"] == run_id), None)
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout}s")


def test_pipeline_under_real_scheduler_and_triggerer(pipeline_stack, postgres, tmp_path):
    stack = pipeline_stack
    sample = land(stack, files=6)
    api_port = free_port()
    env = {
        **os.environ,
        **airflow_environment(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "local-test-secret-not-for-production",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    }
    _airflow(env, "db", "migrate")
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port)],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
    }
    running = []
    try:
        for name, args in processes.items():
            out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            running.append(
                (
                    name,
                    out,
                    subprocess.Popen(
                        [sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT
                    ),
                )
            )
        deadline = time.monotonic() + 120
        while "ndjson_ingest" not in _airflow(env, "dags", "list", "-o", "plain").stdout:
            assert time.monotonic() < deadline, "the DAG processor did not register the DAGs"
            time.sleep(3)
        for dag_id in ("ndjson_ingest", "ndjson_end_of_day"):
            _airflow(env, "dags", "unpause", dag_id)
        _airflow(env, "dags", "trigger", "ndjson_ingest", "--run-id", "e2e-ingest")
        assert _wait_for_run(env, "ndjson_ingest", "e2e-ingest", 600) == "success", _tail(logs)
        _airflow(
            env, "dags", "trigger", "ndjson_end_of_day", "--run-id", "e2e-eod", "-c", json.dumps({"day": sample.day})
        )
        assert _wait_for_run(env, "ndjson_end_of_day", "e2e-eod", 600) == "success", _tail(logs)
    finally:
        for _name, _out, proc in running:
            proc.terminate()
        for _name, out, proc in running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            out.close()
    # The sensor deferred and the triggerer (not the worker) ran PendingWorkTrigger: its log lines are
    # in the sensor's task logs, written by the triggerer.
    sensor_logs = list((tmp_path / "home" / "logs").glob("dag_id=ndjson_ingest/**/task_id=wait_for_pending_work/*"))
    text = "\n".join(p.read_text(errors="replace") for p in sensor_logs if p.is_file())
    assert "DEFERRED" in text, sensor_logs
    assert "pending work ready" in text, text[-3000:]
    assert_day_converted_exactly(stack, sample)


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log")))

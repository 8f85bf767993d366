"""The Airflow UI on the embedded local stack: what ``make ui`` runs and the browser tests start.

A throwaway PostgreSQL cluster (MWAA's metadata database is PostgreSQL), the
local AWS (``tools.moto_serve``: IAM enforced, faults through ``/_faults``) with
the pipeline's resources, and the four Airflow 3 processes (API server with the
UI, scheduler, DAG processor, triggerer) with the LocalExecutor, all bound to
127.0.0.1. Their environment is ``tools.local_airflow``'s, the one
docker-compose.yaml's containers get too: tasks call AWS as the MWAA execution
role's identity, conversions run the real Glue script on local Spark as the Glue
job role's. SimpleAuthManager gets one admin user whose password is written
there, so the login is known.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage
from tools.local_airflow import DEFAULT_PASSWORD, UI_SETTINGS, USERNAME, airflow_stack_environment
from tools.local_stack import REPO_ROOT, airflow_environment, client, free_port, moto_server
from tools.sample_day import SampleDay, sample_day, upload

# The pipeline's DAGs, which the stack waits for and `make ui` unpauses; ndjson_db_cleanup runs from its trigger form.
DAG_IDS = ("ndjson_intake", "ndjson_ingest", "ndjson_end_of_day", "ndjson_maintenance", "ndjson_reprocess")
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
PG_ROOT = Path("/usr/lib/postgresql")


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def postgres_bin() -> Path:
    found = sorted(PG_ROOT.glob("*/bin")) if PG_ROOT.exists() else []
    if not found:
        raise RuntimeError(f"PostgreSQL binaries not found under {PG_ROOT} (install Debian's postgresql-15)")
    return found[-1]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields the SQLAlchemy URL of its ``airflow`` db."""
    pg_bin = postgres_bin()
    # Postgres refuses to run as root: as root, the cluster belongs to the postgres user, outside 0700 dirs.
    data = Path(tempfile.mkdtemp(prefix="airflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    run = {"check": True, "capture_output": True}
    subprocess.run(_as_postgres(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"), **run)
    start = [str(pg_bin / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {data} -h 127.0.0.1"]
    subprocess.run(_as_postgres(*start, "-l", str(data / "server.log"), "-w", "start"), **run)
    try:
        createdb = [str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "airflow"]
        subprocess.run(createdb, **run)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow"
    finally:
        stop = [str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(*stop), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def scheduler_environment(home: Path, database_url: str, api_port: int) -> dict[str, str]:
    """``airflow_environment`` plus what real processes need: LocalExecutor, the execution API, loopback ports."""
    return {
        **airflow_environment(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "local-only-secret-not-for-production",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    }


def airflow(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """One Airflow CLI command; raises with its output when it fails."""
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr}")
    return done


def dag_runs(env: dict[str, str], dag_id: str) -> list[dict[str, Any]]:
    output = airflow(env, "dags", "list-runs", dag_id, "-o", "json").stdout
    # Log lines may precede the JSON document.
    return next((json.loads(line) for line in output.splitlines() if line.startswith("[")), [])


def wait_for_run(env: dict[str, str], dag_id: str, run_id: str, timeout: float) -> str:
    """Poll the metadata database until the run is success or failed; returns that state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = next((r["state"] for r in dag_runs(env, dag_id) if r["run_id"] == run_id), None)
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f}s")


def wait_for_api(url: str, running: dict[str, subprocess.Popen], timeout: float) -> None:
    """Until the API server at ``url`` answers its health check; raises if one of ``running`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in running.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with code {proc.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the API server did not answer at {url} within {timeout:.0f}s")


class AirflowProcesses:
    """The stack's Airflow processes, each in a session of its own: one can be killed and started again.

    Each process logs to ``logs/<name>.log`` (appended to across restarts).
    """

    def __init__(self, env: dict[str, str], api_port: int, logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.commands = {name: [sys.executable, "-m", "airflow", name] for name in PROCESSES}
        self.commands["api-server"] += ["--host", "127.0.0.1", "--port", str(api_port)]
        self.running: dict[str, subprocess.Popen] = {}
        self._outputs: list[Any] = []
        self._sessions: list[int] = []  # every session started, so nothing a killed process forked outlives the stack

    def start(self, name: str) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._outputs.append(out)
        # A session of its own: Ctrl-C reaches only this process, which stops each one with its workers.
        proc = subprocess.Popen(
            self.commands[name], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[name] = proc
        self._sessions.append(proc.pid)
        return proc

    def kill(self, name: str) -> int:
        """SIGKILL one process, as when its host dies; what it forked is left running. Returns the pid killed."""
        proc = self.running[name]
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        return proc.pid

    def restart(self, name: str) -> subprocess.Popen:
        """Start a process again after ``kill`` (or after it exited on its own)."""
        if self.running[name].poll() is None:
            raise RuntimeError(f"airflow {name} (pid {self.running[name].pid}) is still running")
        return self.start(name)

    def stop(self) -> None:
        for proc in self.running.values():
            proc.terminate()
        for proc in self.running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever the processes forked and left behind (executor workers, log servers) goes with them.
        for session in self._sessions:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)
        for out in self._outputs:
            out.close()


@contextlib.contextmanager
def airflow_processes(
    env: dict[str, str], api_port: int, logs: Path, timeout: float = 180
) -> Iterator[AirflowProcesses]:
    """Migrate the database, run the API server, scheduler, DAG processor and triggerer until exit.

    Yields once the API server answers and the DAG processor has registered the DAGs;
    each process logs to ``logs/<name>.log``.
    """
    airflow(env, "db", "migrate")
    logs.mkdir(parents=True, exist_ok=True)
    processes = AirflowProcesses(env, api_port, logs)
    try:
        for name in PROCESSES:
            processes.start(name)
        wait_for_api(f"http://127.0.0.1:{api_port}", processes.running, timeout)
        deadline = time.monotonic() + timeout
        while not all(dag_id in airflow(env, "dags", "list", "-o", "plain").stdout for dag_id in DAG_IDS):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the DAG processor did not register {DAG_IDS}; see {logs}/dag-processor.log")
            time.sleep(3)
        yield processes
    finally:
        processes.stop()


def tail_logs(logs: Path, lines: int = 15) -> str:
    """The last lines of every process log, for a failure message."""
    tails = (f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) for p in logs.glob("*.log"))
    return "\n".join(sorted(tails))


def _json_request(url: str, *, body: dict | None = None, token: str | None = None) -> Any:
    """One JSON request to the local API server (a POST when there is a body)."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - the stack's loopback URL
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


@dataclass
class UiStack:
    """A running stack: where the UI is, how to log in, and clients for what the pipeline wrote."""

    url: str
    username: str
    password: str
    endpoint: str
    settings: PipelineSettings
    env: dict[str, str]
    home: Path

    @property
    def logs(self) -> Path:
        return self.home / "process-logs"

    def s3(self):
        return client("s3", self.endpoint)

    def ledger(self) -> Ledger:
        return Ledger(client("dynamodb", self.endpoint), self.settings.names.ledger_table)

    def land(self, day: str, files: int, seed: int = 7) -> SampleDay:
        """Upload a generated sample day to the landing bucket (S3 notifications go to the queue)."""
        sample = sample_day(day, self.settings, files=files, seed=seed)
        sqs = client("sqs", self.endpoint)
        queue_url = sqs.get_queue_url(QueueName=self.settings.names.queue)["QueueUrl"]
        upload(sample, self.s3(), sqs, queue_url, self.settings.names.landing_bucket)
        return sample

    def _token(self) -> str:
        credentials = {"username": self.username, "password": self.password}
        return _json_request(f"{self.url}/auth/token", body=credentials)["access_token"]

    def api_get(self, path: str, **query: str) -> Any:
        """GET a path of Airflow's REST API (``/api/v2/...``) as the stack's user; returns the decoded JSON."""
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        return _json_request(url, token=self._token())

    def api_post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body to a path of Airflow's REST API as the stack's user; returns the decoded JSON."""
        return _json_request(f"{self.url}{path}", body=body, token=self._token())

    def storage(self) -> Storage:
        return Storage(s3_client=self.s3())

    def day_report(self, day: str) -> dict[str, Any] | None:
        """The report the end-of-day DAG wrote for ``day``, or None."""
        body = self.storage().read_bytes_if_exists(self.settings.layout.report_uri(day))
        return None if body is None else json.loads(body)


@contextlib.contextmanager
def ui_stack(
    home: Path,
    *,
    name_prefix: str | None = None,
    endpoint: str | None = None,
    password: str = DEFAULT_PASSWORD,
    unpause: tuple[str, ...] = (),
    **setting_overrides: Any,
) -> Iterator[UiStack]:
    """Start everything, yield the running stack, stop every process on exit.

    :param home: AIRFLOW_HOME (created; logs go under it).
    :param name_prefix: the resources' name prefix (default: the settings' default).
    :param endpoint: a moto server to use; by default one is started for the stack.
    :param unpause: DAGs to unpause at start (a UI trigger or backfill can unpause the others).
    :param setting_overrides: pipeline settings on top of ``local_pipeline_settings``.
    """
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if endpoint is None:
            endpoint = stack.enter_context(moto_server(log_path=str(home / "moto.log")))
        names = PipelineSettings(**({"name_prefix": name_prefix} if name_prefix else {})).names
        database = stack.enter_context(postgres_database())
        api_port = free_port()
        # The same wiring as docker-compose.yaml's: tasks run as the MWAA role's identity, Glue as the Glue role's.
        stack_env, settings = airflow_stack_environment(
            endpoint,
            names,
            home=home,
            api_url=f"http://127.0.0.1:{api_port}",
            database_url=database,
            password=password,
            **setting_overrides,
        )
        env = {**os.environ, **scheduler_environment(home, database, api_port), **stack_env}
        ui = UiStack(
            url=f"http://127.0.0.1:{api_port}",
            username=USERNAME,
            password=password,
            endpoint=endpoint,
            settings=settings,
            env=env,
            home=home,
        )
        stack.enter_context(airflow_processes(env, api_port, ui.logs))
        for dag_id in unpause:
            airflow(env, "dags", "unpause", dag_id)
        yield ui


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description="The Airflow UI on the local stack, until Ctrl-C.")
    parser.add_argument("--files", type=int, default=24, help="NDJSON files in today's sample day")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="the admin user's password")
    args = parser.parse_args()
    home = REPO_ROOT / ".local" / "ui"
    shutil.rmtree(home, ignore_errors=True)  # a fresh start: no runs or triggers left from last time
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the stack as Ctrl-C does
    print("starting PostgreSQL, the moto server and Airflow (a minute or two) ...", flush=True)
    try:
        with ui_stack(home, password=args.password, unpause=DAG_IDS, **UI_SETTINGS) as ui:
            day = utcnow().date().isoformat()
            sample = ui.land(day, files=args.files)
            print(
                f"""
Airflow UI    {ui.url}/   (log in as {ui.username} / {ui.password})
local AWS     {ui.endpoint} (IAM enforced, faults via /_faults), resources {ui.settings.names.name_prefix}-*
sample day    {day}: {len(sample.uploads)} objects in s3://{ui.settings.names.landing_bucket}/
              ndjson_intake and ndjson_ingest run every minute; or trigger ndjson_end_of_day with day={day}
              operator actions from the trigger form: ndjson_maintenance, ndjson_reprocess (dry runs by default)
lake          s3://{ui.settings.names.lake_bucket}/{ui.settings.dataset}/ ; day reports under _pipeline/reports/
logs          {ui.logs.relative_to(REPO_ROOT)}/ (processes), {(home / "logs").relative_to(REPO_ROOT)}/ (tasks)

Ctrl-C stops everything.""",
                flush=True,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)


if __name__ == "__main__":
    main()

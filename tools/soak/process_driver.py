"""Soak driver on the real Airflow processes: PostgreSQL, API server, scheduler, DAG processor, triggerer.

The processes are the ones ``make ui`` runs (tools/ui_stack.py), with the
LocalExecutor. Runs are triggered and cleared through the REST API, as a person
would from the UI; the ingest DAG's own schedule runs too. Kills:

- ``scheduler``/``triggerer``/``dag-processor``: SIGKILL of that process, started
  again after the kill's pause (what it forked, e.g. executor workers, is left
  to fend for itself, as when its host dies);
- ``task``: the task runner converting a manifest, with its Spark job (its
  supervisor reports the failure and Airflow retries);
- ``worker``: the executor worker supervising that task too (the scheduler
  finds the task by its missing heartbeat).

The scheduler's timeouts for lost tasks and dead schedulers/triggerers are
scaled to the soak's time (``FAST_RECOVERY``; Airflow's defaults are minutes).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

from tools.local_airflow import DEFAULT_PASSWORD, USERNAME, login_environment
from tools.local_stack import free_port
from tools.soak.dagtest_driver import Job, RunOutcome
from tools.soak.kills import KillWatch, kill_tree, spark_jobs
from tools.soak.stack import SoakStack
from tools.ui_stack import DAG_IDS, UiStack, airflow, airflow_processes, postgres_database, scheduler_environment

FAST_RECOVERY = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "20",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
}
TERMINAL = ("success", "failed")
POLL_SECONDS = 3


class ProcessDriver:
    kind = "processes"

    def __init__(self, stack: SoakStack, run_timeout: float = 1200) -> None:
        self.stack = stack
        self.run_timeout = run_timeout
        self.home = stack.workdir / "airflow"
        self._exit = contextlib.ExitStack()
        self._runs = 0
        self.processes = None
        self.ui: UiStack | None = None

    def start(self) -> None:
        database = self._exit.enter_context(postgres_database())
        api_port = free_port()
        env = {
            **self.stack.airflow_env(self.home),
            **scheduler_environment(self.home, database, api_port),
            **login_environment(self.home, DEFAULT_PASSWORD),
            **FAST_RECOVERY,
        }
        self.processes = self._exit.enter_context(airflow_processes(env, api_port, self.home / "process-logs"))
        for dag_id in DAG_IDS:
            airflow(env, "dags", "unpause", dag_id)
        self.ui = UiStack(
            url=f"http://127.0.0.1:{api_port}",
            username=USERNAME,
            password=DEFAULT_PASSWORD,
            endpoint=self.stack.endpoint,
            settings=self.stack.settings,
            env=env,
            home=self.home,
        )

    def stop(self) -> None:
        self._exit.close()

    # ------------------------------------------------------------------ runs

    def run(self, jobs: list[Job], days: list[str], *, clear_failed: bool = False) -> list[RunOutcome]:
        """Trigger ``jobs`` at once and wait for them; clear a failed run's failed tasks once if asked."""
        started = []
        for job in jobs:
            self._runs += 1
            run_id = f"soak-{self._runs:03d}-{job.dag_id}"
            self.ui.api_post(
                f"/api/v2/dags/{job.dag_id}/dagRuns",
                {"dag_run_id": run_id, "logical_date": None, "conf": job.conf or {}},
            )
            watch = None
            if job.kill is not None:
                watch = KillWatch(job.kill, self.stack, self._kill_action(job), days, self._deferred(job, run_id))
                watch.start()
            started.append((job, run_id, watch, time.monotonic()))
        outcomes = []
        for job, run_id, watch, began in started:
            state = self._wait(job.dag_id, run_id, began)
            if state == "failed" and clear_failed:
                self.ui.api_post(
                    f"/api/v2/dags/{job.dag_id}/clearTaskInstances",
                    {"dry_run": False, "dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True},
                )
                state = self._wait(job.dag_id, run_id, time.monotonic(), cleared=True)
            if watch is not None:
                watch.stop()
            killed = f"{job.kill.target}@{watch.fired_at}" if watch is not None and watch.outcome else None
            log = self.home / "process-logs" / "scheduler.log"
            outcomes.append(
                RunOutcome(job, state, time.monotonic() - began, self._tasks(job.dag_id, run_id), log, killed)
            )
        return outcomes

    def _run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.ui.api_get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def _wait(self, dag_id: str, run_id: str, began: float, *, cleared: bool = False) -> str:
        if cleared:  # the clear puts the run back to queued; wait for it to leave its old verdict
            time.sleep(POLL_SECONDS)
        while time.monotonic() - began < self.run_timeout:
            state = self._run_state(dag_id, run_id)
            if state in TERMINAL:
                return state
            time.sleep(POLL_SECONDS)
        return "timeout"

    def _tasks(self, dag_id: str, run_id: str) -> dict[str, list[str]]:
        found = self.ui.api_get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit="500")
        tasks: dict[str, list[str]] = {}
        for ti in found["task_instances"]:
            tasks.setdefault(ti["task_id"], []).append(f"{ti['state']}(try {ti['try_number']})")
        return tasks

    def _deferred(self, job: Job, run_id: str):
        def deferred() -> bool:
            found = self.ui.api_get(f"/api/v2/dags/{job.dag_id}/dagRuns/{run_id}/taskInstances", state="deferred")
            return bool(found["task_instances"])

        return deferred

    # ------------------------------------------------------------------ kills

    def _kill_action(self, job: Job):
        kill = job.kill

        def action(manifest_id: str | None) -> Any:
            if kill.target in ("scheduler", "triggerer", "dag-processor"):
                pid = self.processes.kill(kill.target)
                time.sleep(kill.restart_after)
                self.processes.restart(kill.target)
                return pid
            runner = _task_runner(self.stack, manifest_id)
            if runner is None:
                return None
            victim = runner.parent() if kill.target == "worker" else runner
            return kill_tree(victim.pid) if victim is not None else None

        return action


def _task_runner(stack: SoakStack, manifest_id: str | None) -> psutil.Process | None:
    """The task runner (``airflow worker -- <ti id>``) whose Spark job converts ``manifest_id``."""
    job = spark_jobs(stack).get(manifest_id) if manifest_id else None
    with contextlib.suppress(psutil.Error):
        for parent in job.parents() if job else ():
            if " ".join(parent.cmdline()).startswith("airflow worker --"):
                return parent
    return None

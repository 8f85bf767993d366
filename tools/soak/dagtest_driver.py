"""Soak driver on ``dag.test()``: each DAG run is a subprocess (tools/soak/dag_run.py), killed with its Spark job.

Runs may overlap (an end-of-day run beside the round's ingest run, the
end-of-day runs of several days): each concurrent run gets an Airflow home and
SQLite database of its own, a copy of one migrated database (what runs share is
what matters: the ledger and S3). A killed run is not retried by Airflow: the next
round's runs (new run ids) and the sweeper must repair what it left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tools.soak.kills import KillWatch, kill_tree, owner_of, spark_jobs
from tools.soak.scenario import Kill
from tools.soak.stack import SoakStack

DAG_RUN = Path(__file__).resolve().parent / "dag_run.py"


@dataclass(frozen=True)
class Job:
    dag_id: str
    conf: dict | None = None
    kill: Kill | None = None


@dataclass
class RunOutcome:
    job: Job
    state: str  # success | failed | killed | timeout | crashed
    seconds: float
    tasks: dict[str, list[str]]
    log: Path
    killed: str | None = None  # the kill's trigger, when it fired


class DagTestDriver:
    kind = "dagtest"

    def __init__(self, stack: SoakStack, run_timeout: float = 900) -> None:
        self.stack = stack
        self.run_timeout = run_timeout
        self.template = stack.workdir / "airflow-template"
        self._runs = 0

    def start(self) -> None:
        """Migrate the metadata database every run's home starts from."""
        env = self.stack.airflow_env(self.template)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

    def _home(self, dag_id: str, slot: int) -> Path:
        """The home of the ``slot``-th concurrent run of ``dag_id``; made from the template on first use."""
        home = self.stack.workdir / f"airflow-{dag_id}-{slot}"
        if not (home / "airflow.db").exists():
            self.stack.airflow_env(home)
            shutil.copy(self.template / "airflow.db", home / "airflow.db")
        return home

    def stop(self) -> None:
        pass

    def run(self, jobs: list[Job], days: list[str], *, clear_failed: bool = False) -> list[RunOutcome]:
        """Run ``jobs`` at once; each job's kill, if any, fires at its trigger.

        ``clear_failed`` has no meaning here: a ``dag.test()`` run is not cleared, it is run again.
        """
        started, slots = [], Counter()
        for job in jobs:
            self._runs += 1
            slots[job.dag_id] += 1
            log = self.stack.workdir / f"run-{self._runs:03d}-{job.dag_id}.log"
            command = [sys.executable, str(DAG_RUN), job.dag_id] + ([json.dumps(job.conf)] if job.conf else [])
            out = open(log, "wb")  # noqa: SIM115 - closed below
            proc = subprocess.Popen(
                command,
                env=self.stack.airflow_env(self._home(job.dag_id, slots[job.dag_id])),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append((job, proc, out, log, time.monotonic()))
        pids = [proc.pid for _, proc, *_ in started]
        watches = [
            KillWatch(job.kill, self.stack, self._kill_action(proc.pid, pids), days).start()
            for job, proc, *_ in started
            if job.kill is not None
        ]
        finished = []
        for job, proc, out, log, began in started:
            try:
                proc.wait(timeout=max(1.0, self.run_timeout - (time.monotonic() - began)))
                timed_out = False
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
                timed_out = True
            out.close()
            finished.append((job, proc.pid, log, time.monotonic() - began, timed_out))
        for watch in watches:
            watch.stop()
        # A kill is the victim's: the run whose conversion made the moment, which may not be the kill's own job.
        killed = {w.outcome: w.fired_at for w in watches if w.outcome}
        return [
            self._outcome(job, log, seconds, killed.get(pid), timed_out)
            for job, pid, log, seconds, timed_out in finished
        ]

    def _kill_action(self, own_pid: int, pids: list[int]):
        """Kill the run converting the moment's manifest (it may be another run of the round), else this run."""

        def action(manifest_id: str | None) -> int | None:
            job = spark_jobs(self.stack).get(manifest_id) if manifest_id else None
            victim = (owner_of(job, pids) if job else None) or own_pid
            return victim if kill_tree(victim) else None

        return action

    def _outcome(self, job: Job, log: Path, seconds: float, fired_at: str | None, timed_out: bool) -> RunOutcome:
        text = log.read_text(errors="replace")
        report = next((line for line in reversed(text.splitlines()) if line.startswith("SOAK-RUN ")), None)
        killed = f"{job.dag_id.removeprefix('ndjson_')}-run@{fired_at}" if fired_at else None
        if report is not None:
            doc = json.loads(report.removeprefix("SOAK-RUN "))
            return RunOutcome(job, doc["state"], seconds, doc["tasks"], log, killed)
        state = "killed" if killed else "timeout" if timed_out else "crashed"
        return RunOutcome(job, state, seconds, {}, log, killed)

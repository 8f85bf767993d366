"""Metadata database hygiene: purge what Airflow's metadata database holds beyond the retention, never running work.

Task code in Airflow 3 has no database access (the task runner replaces the
metadata database's URL before a task starts), so the purge is Airflow's own
``airflow db clean``, run where the database is reachable: on MWAA through its CLI
endpoint on the web server (what MWAA documents for Airflow 3), locally with the
``airflow`` command and the local database (``AirflowAdmin``, the port the Airflow
side implements). What is old is decided here:

- the horizon is now minus the retention, moved back to the earliest start of an
  unfinished DAG run (running or queued) or of any task instance of one, read
  through Airflow's REST API. ``db clean`` picks dag_run and task_instance rows by
  their own ``start_date``: a run that started before the horizon and still runs,
  or an old run cleared since, would otherwise lose its rows (and the scheduler
  would run its finished tasks again). Rows of unfinished runs are never older
  than the horizon, so ``db clean`` keeps them.
- ``db clean`` at that horizon covers every table it knows (dag_run, task_instance
  and its history, xcom, log, job, import_error, trigger, dag_version, ...); no
  archive tables (``--skip-archive``: they would hold what was purged), a failure
  on any table fails the run (``--error-on-cleanup-failure``), deletes in batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

# The Airflow connection that gives the local stack's cleanup its API server (host, login, password) and its
# metadata database (extra "sql_alchemy_conn"): locally no MWAA web server runs the CLI for the task.
LOCAL_AIRFLOW_CONNECTION = "ndjson_local_airflow"
DELETE_BATCH_ROWS = 10_000
_PAGE = 100
_CHECKING = re.compile(r"^Checking table (\S+)$")
_FOUND = re.compile(r"^Found (\d+) rows meeting deletion criteria\.$")
_CLEANUP_FAILED = "encountered errors on the following tables"


class MetadataCleanupError(RuntimeError):
    """The cleanup could not read the unfinished work or ``db clean`` failed; the message says which and why."""


@dataclass(frozen=True)
class CliOutput:
    """What an ``airflow`` command printed; ``exit_code`` is None where the runner reports none (MWAA's endpoint)."""

    stdout: str
    stderr: str
    exit_code: int | None


class AirflowAdmin(Protocol):
    """Airflow's REST API and CLI, where the metadata database is: MWAA's web server, or the local stack."""

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        """GET ``path`` of Airflow's public REST API (relative to ``/api/v2``); the decoded JSON body."""
        ...

    def run_cli(self, args: Sequence[str]) -> CliOutput:
        """Run ``airflow <args>`` against the metadata database."""
        ...


@dataclass(frozen=True)
class UnfinishedWork:
    """The earliest start of an unfinished DAG run: the run's own or one of its task instances'."""

    dag_id: str
    run_id: str
    started: datetime

    def as_dict(self) -> dict[str, str]:
        return {"dag_id": self.dag_id, "run_id": self.run_id, "started": self.started.isoformat()}


@dataclass(frozen=True)
class CleanupRecord:
    """One cleanup: the horizon it purged before, what held it back, and the rows ``db clean`` found per table."""

    horizon: datetime
    retention_days: int
    held_back_by: UnfinishedWork | None
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "horizon": self.horizon.isoformat(),
            "retention_days": self.retention_days,
            "held_back_by": self.held_back_by.as_dict() if self.held_back_by else None,
            "dry_run": self.dry_run,
            "rows": dict(sorted(self.rows.items())),
        }


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _unfinished_runs(api: AirflowAdmin) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for state in ("running", "queued"):
        offset = 0
        while True:
            query = {"state": state, "order_by": "start_date", "limit": _PAGE, "offset": offset}
            page = api.get("/dags/~/dagRuns", query)
            runs.extend(page["dag_runs"])
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                break
    return runs


def earliest_unfinished_work(api: AirflowAdmin) -> UnfinishedWork | None:
    """The earliest start among unfinished DAG runs and all their task instances, or None when nothing has started."""
    earliest: UnfinishedWork | None = None
    for run in _unfinished_runs(api):
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        # The earliest started task instance; the range filter leaves out the ones that never started.
        first = api.get(path, {"order_by": "start_date", "start_date_gte": "1970-01-01T00:00:00Z", "limit": 1})
        starts = [_parse_time(run.get("start_date"))]
        starts += [_parse_time(ti.get("start_date")) for ti in first["task_instances"]]
        for started in starts:
            if started is not None and (earliest is None or started < earliest.started):
                earliest = UnfinishedWork(dag_id, run_id, started)
    return earliest


def cleanup_horizon(
    now: datetime, retention_days: int, unfinished: UnfinishedWork | None
) -> tuple[datetime, UnfinishedWork | None]:
    """Rows older than the horizon go: ``now`` minus the retention, or the unfinished work's start if that is earlier
    (returned too, as what held the horizon back). Whole seconds, rounded down: a row of that second stays too."""
    horizon = now - timedelta(days=retention_days)
    held_back_by = unfinished if unfinished is not None and unfinished.started < horizon else None
    return (held_back_by.started if held_back_by else horizon).replace(microsecond=0), held_back_by


def db_clean_arguments(horizon: datetime, dry_run: bool) -> list[str]:
    """``airflow db clean`` for every table it covers, rows before ``horizon``, with no archive and no prompt."""
    arguments = ["db", "clean", "--clean-before-timestamp", horizon.isoformat(), "--skip-archive", "--yes"]
    arguments += ["--error-on-cleanup-failure", "--batch-size", str(DELETE_BATCH_ROWS)]
    return [*arguments, "--dry-run"] if dry_run else arguments


def rows_per_table(output: CliOutput) -> dict[str, int]:
    """The rows ``db clean`` found beyond the horizon, per table it checked; raises if it failed or checked nothing."""
    tail = (output.stderr or output.stdout)[-2000:]
    if output.exit_code not in (0, None) or _CLEANUP_FAILED in output.stdout + output.stderr:
        raise MetadataCleanupError(f"airflow db clean failed (exit code {output.exit_code}):\n{tail}")
    rows: dict[str, int] = {}
    table = None
    for line in output.stdout.splitlines():
        if checking := _CHECKING.match(line.strip()):
            table = checking.group(1)
        elif (found := _FOUND.match(line.strip())) and table is not None:
            rows[table] = int(found.group(1))
    if not rows:
        raise MetadataCleanupError(f"airflow db clean reported no table it checked; its output ends with:\n{tail}")
    return rows


def purge_metadata(api: AirflowAdmin, now: datetime, retention_days: int, dry_run: bool = False) -> CleanupRecord:
    """Purge the metadata database's rows older than the retention, keeping every row of unfinished runs.

    :param now: the current time (timezone-aware).
    :param retention_days: the setting ``metadata_retention_days``.
    :param dry_run: count what would go (``db clean --dry-run``), delete nothing.
    """
    horizon, held_back_by = cleanup_horizon(now, retention_days, earliest_unfinished_work(api))
    rows = rows_per_table(api.run_cli(db_clean_arguments(horizon, dry_run)))
    return CleanupRecord(horizon, retention_days, held_back_by, dry_run, rows)

"""The cleanup's decisions without a database: the horizon, the command, reading what ``db clean`` printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ndjson_pipeline.metadata_cleanup import (
    CliOutput,
    MetadataCleanupError,
    UnfinishedWork,
    cleanup_horizon,
    db_clean_arguments,
    rows_per_table,
)
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow.db_cleanup import airflow_admin
from ndjson_pipeline_airflow.hooks.airflow_admin import LocalAirflowAdmin
from tools.local_airflow import local_airflow_connection_env

NOW = datetime(2026, 12, 7, 3, 15, 42, 123456, tzinfo=UTC)
# What `airflow db clean` prints per table (Airflow 3.3.1, airflow/utils/db_cleanup.py).
PRINTED = """
Checking table dag_run
Found 2 rows meeting deletion criteria.
Performing Delete...
Finished Performing Delete

Checking table xcom
Found 0 rows meeting deletion criteria.
"""


def _make_output(**overrides) -> CliOutput:
    return CliOutput(**{"stdout": PRINTED, "stderr": "", "exit_code": 0, **overrides})


def test_the_horizon_is_the_retention_unless_unfinished_work_started_earlier():
    later = UnfinishedWork("ndjson_ingest", "scheduled__x", NOW - timedelta(days=3))
    assert cleanup_horizon(NOW, 30, later) == (datetime(2026, 11, 7, 3, 15, 42, tzinfo=UTC), None)
    earlier = UnfinishedWork("ndjson_reprocess", "manual__y", NOW - timedelta(days=31, microseconds=5))
    horizon, held_back_by = cleanup_horizon(NOW, 30, earlier)
    assert held_back_by == earlier
    # Rounded down to the second: db clean deletes rows strictly before it, so the run's own rows stay.
    assert horizon <= earlier.started
    assert horizon == earlier.started.replace(microsecond=0)


def test_db_clean_runs_unprompted_without_archives_and_fails_on_a_table_it_could_not_clean():
    arguments = db_clean_arguments(datetime(2026, 11, 7, 3, 15, 42, tzinfo=UTC), dry_run=False)
    assert arguments[:4] == ["db", "clean", "--clean-before-timestamp", "2026-11-07T03:15:42+00:00"]
    assert {"--skip-archive", "--yes", "--error-on-cleanup-failure"} <= set(arguments)
    assert "--dry-run" not in arguments
    assert db_clean_arguments(NOW, dry_run=True)[-1] == "--dry-run"


def test_rows_found_per_table_are_read_from_what_db_clean_printed():
    assert rows_per_table(_make_output()) == {"dag_run": 2, "xcom": 0}
    # MWAA's CLI endpoint reports no exit code: the output alone decides.
    assert rows_per_table(_make_output(exit_code=None)) == {"dag_run": 2, "xcom": 0}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exit_code": 1, "stderr": "RuntimeError: boom"}, "exit code 1"),
        # What --error-on-cleanup-failure raises, as MWAA's endpoint returns it (no exit code).
        (
            {"exit_code": None, "stderr": "RuntimeError: airflow db clean encountered errors on the following tables"},
            "failed",
        ),
        # A command the endpoint refused or the CLI did not understand checks no table.
        ({"exit_code": None, "stdout": "", "stderr": "airflow: error: unrecognized arguments"}, "no table"),
    ],
)
def test_a_failed_or_refused_db_clean_raises_with_its_output(overrides, message):
    with pytest.raises(MetadataCleanupError, match=message):
        rows_per_table(_make_output(**overrides))


def test_the_runner_setting_picks_where_db_clean_runs(monkeypatch):
    monkeypatch.delenv("AIRFLOW_ENV_NAME", raising=False)
    with pytest.raises(MetadataCleanupError, match=r"AIRFLOW_ENV_NAME.*'metadata_cleanup_runner'"):
        airflow_admin(PipelineSettings())
    for name, value in local_airflow_connection_env("http://127.0.0.1:8080", "pw", "postgresql://db/airflow").items():
        monkeypatch.setenv(name, value)
    local = airflow_admin(PipelineSettings(metadata_cleanup_runner="local"))
    assert isinstance(local, LocalAirflowAdmin)
    assert (local.url, local.database) == ("http://127.0.0.1:8080", "postgresql://db/airflow")

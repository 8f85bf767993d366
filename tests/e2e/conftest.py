"""End-to-end harness: the real DAGs, run by ``dag.test()`` in this process, over the moto server.

Conversions run the real Glue script on local Spark (``glue_runner`` "local"),
so every assertion is about real Parquet and real quarantine output. The DAG
tasks run as the MWAA execution role's local identity, the Glue job as the Glue
job role's; a test that made a call its role's policy refuses fails and names it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ndjson_pipeline.catalog import TableDefinition, ensure_table
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.conversion import ConversionOptions
from tests.conftest import Stack, make_stack
from tests.factories import EVENTS_SCHEMA, EVOLVED_SCHEMA
from tools import iam_report
from tools.local_stack import REPO_ROOT, client, iceberg_catalog, local_pipeline_settings
from tools.sample_day import SampleDay, sample_day, upload


@pytest.fixture(scope="session")
def airflow_db() -> None:
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    for dag in bag.dags.values():
        for task in dag.tasks:
            task.retry_delay = timedelta(seconds=1)  # retries stay, the waiting between them does not
            task.retry_exponential_backoff = False
        DECLARED_PARAMS[dag.dag_id] = copy.deepcopy(dag.params.dump())
    return bag.dags


@pytest.fixture(scope="package")
def iam_calls_summary(aws_endpoint):
    """What each role called in the end-to-end tests (tools/iam_report.py), in .local/ like make run's output."""
    iam_report.reset(aws_endpoint)
    yield
    path = REPO_ROOT / ".local" / "iam-calls-e2e.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(iam_report.summary(aws_endpoint) + "\n")


@pytest.fixture(autouse=True)
def no_refused_calls(aws_endpoint, iam_calls_summary):
    """Fail a test whose pipeline made a call its role may not make, even one the code handled."""
    before = iam_report.last_denial(aws_endpoint)
    yield
    refused = [d for d in iam_report.denials(aws_endpoint, since=before) if d["identity"] != "root"]
    assert not refused, "calls the roles' policies refuse:\n" + "\n".join(d["message"] for d in refused)


def configure(stack: Stack, monkeypatch, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("table_format", stack.settings.table_format)
    settings = local_pipeline_settings(stack.names, max_wait_seconds=1, min_batch_files=1, **overrides)
    for name, value in stack.identities.airflow_env(stack.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS", json.dumps(settings))
    return settings


def deploy_next_schema_version(stack: Stack, monkeypatch, **overrides: Any) -> None:
    """What a deployment of ``EVOLVED_SCHEMA`` does: its schema object, the table (Terraform's on AWS), the setting.

    The table keeps the stack's conversion options (the rescue column); ``overrides`` go to the settings. An
    Iceberg table gains the new fields with the first commit that brings them: the deployment leaves it alone.
    """
    key = f"glue/schemas/v{EVOLVED_SCHEMA.version}/events.json"
    document = {**EVOLVED_SCHEMA.struct_json(), "version": EVOLVED_SCHEMA.version}
    stack.s3.put_object(Bucket=stack.names.assets_bucket, Key=key, Body=json.dumps(document).encode())
    if stack.settings.table_format == "hive":
        definition = TableDefinition.for_dataset(
            stack.names.catalog_database, stack.settings.layout, EVOLVED_SCHEMA, ConversionOptions()
        )
        updated = f"updated from schema version {EVENTS_SCHEMA.version} to {EVOLVED_SCHEMA.version}"
        assert ensure_table(client("glue", stack.endpoint), definition) == updated
    configure(stack, monkeypatch, schema_uri=f"s3://{stack.names.assets_bucket}/{key}", **overrides)


@pytest.fixture
def pipeline_stack(aws_endpoint, monkeypatch, request) -> Stack:
    """A stack whose table is in the format of the test's parameter (``indirect``), Hive by default."""
    stack = make_stack(aws_endpoint, table_format=getattr(request, "param", "hive"))
    configure(stack, monkeypatch)
    return stack


# Tests that prove a behaviour in both table formats: @BOTH_FORMATS on a test taking pipeline_stack.
BOTH_FORMATS = pytest.mark.parametrize("pipeline_stack", ["hive", "iceberg"], indirect=True)


def iceberg_table(stack: Stack):
    """The dataset's Iceberg table, loaded now, as the tests' root identity reads it."""
    catalog = iceberg_catalog(stack.endpoint, stack.names)
    return catalog.load_table((stack.names.catalog_database, stack.settings.dataset))


def table_rows(stack: Stack, columns: tuple[str, ...] = ("event_id",), snapshot_id: int | None = None) -> list[dict]:
    """The rows a reader of the Iceberg table sees (its current snapshot, or ``snapshot_id``)."""
    table = iceberg_table(stack)
    if table.current_snapshot() is None:
        return []
    return table.scan(selected_fields=columns, snapshot_id=snapshot_id).to_arrow().to_pylist()


def today() -> str:
    return utcnow().date().isoformat()


def land(stack: Stack, files: int, seed: int = 7, day: str | None = None) -> SampleDay:
    sample = sample_day(day or today(), stack.settings, files=files, seed=seed)
    upload(sample, stack.s3, stack.sqs, stack.queue_url, stack.names.landing_bucket)
    return sample


# Each DAG's params as its file declares them. dag.test() in one process can carry a run's conf over to the next run
# of the same DAG object (the reprocess DAG's "action" did): every run names every param, defaults included.
DECLARED_PARAMS: dict[str, dict[str, Any]] = {}


def run(dags, dag_id: str, **conf: Any):
    return dags[dag_id].test(run_conf={**DECLARED_PARAMS[dag_id], **conf} or None)


def ingest(dags):
    """What the two schedules do for a file: an intake run registers it, then an ingest run converts it (returned)."""
    intake = run(dags, "ndjson_intake")
    assert str(intake.state) == "success", task_states(intake)
    return run(dags, "ndjson_ingest")


def task_states(dag_run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def parquet_event_ids(stack: Stack) -> list[str]:
    """Every event id a reader of the dataset sees, duplicates kept: its Parquet files (Hive), its table (Iceberg)."""
    if stack.settings.table_format == "iceberg":
        return [row["event_id"] for row in table_rows(stack)]
    objects = _download(stack, stack.names.lake_bucket, f"{stack.settings.dataset}/", ".parquet")
    if not objects:
        return []
    files = ", ".join(f"'{p}'" for p in objects)
    return [row[0] for row in duckdb.sql(f"SELECT event_id FROM read_parquet([{files}])").fetchall()]


def parquet_source_uris(stack: Stack) -> set[str]:
    """The distinct ``_source_uri`` lineage values of the dataset's rows."""
    if stack.settings.table_format == "iceberg":
        return {row["_source_uri"] for row in table_rows(stack, ("_source_uri",))}
    objects = _download(stack, stack.names.lake_bucket, f"{stack.settings.dataset}/", ".parquet")
    files = ", ".join(f"'{p}'" for p in objects)
    return {row[0] for row in duckdb.sql(f"SELECT DISTINCT _source_uri FROM read_parquet([{files}])").fetchall()}


def parquet_snapshot(stack: Stack) -> dict[str, str]:
    """Key -> eTag of every object of the dataset (and the table's snapshot): identical snapshots, identical output."""
    paginator = stack.s3.get_paginator("list_objects_v2")
    table = {}
    if stack.settings.table_format == "iceberg":
        table = {"current snapshot": str(iceberg_table(stack).current_snapshot())}
    return table | {
        obj["Key"]: obj["ETag"]
        for page in paginator.paginate(Bucket=stack.names.lake_bucket, Prefix=f"{stack.settings.dataset}/")
        for obj in page.get("Contents", [])
    }


def quarantined_line_records(stack: Stack) -> list[dict]:
    records = []
    for path in _download(stack, stack.names.quarantine_bucket, f"{stack.settings.dataset}/", ".json"):
        if "lines-" not in Path(path).name:
            continue
        for line in Path(path).read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def _download(stack: Stack, bucket: str, prefix: str, suffix: str) -> list[str]:
    target = Path(tempfile.mkdtemp(prefix="e2e-"))
    paths = []
    for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for n, obj in enumerate(page.get("Contents", [])):
            if obj["Key"].endswith(suffix) and obj["Size"] > 0:
                path = target / f"{len(paths):05d}-{n}-{obj['Key'].rsplit('/', 1)[-1]}"
                stack.s3.download_file(bucket, obj["Key"], str(path))
                paths.append(str(path))
    return paths

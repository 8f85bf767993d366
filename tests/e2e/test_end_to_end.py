"""The whole pipeline over the moto server with local Spark: exact rows, faults injected, reruns.

Invariant checked after every scenario: every file version of the day is
terminal (DONE, QUARANTINED, or FAILED with an alert), the Parquet holds
exactly the valid input rows (count == distinct == expected), and every bad
line is in quarantine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from ndjson_pipeline import local_glue
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.planning import plan_manifests
from ndjson_pipeline.steps.reporting import day_report
from tests.conftest import make_stack
from tests.e2e.conftest import (
    BOTH_FORMATS,
    configure,
    ingest,
    land,
    parquet_event_ids,
    parquet_snapshot,
    parquet_source_uris,
    run,
    task_states,
)
from tests.e2e.expectations import assert_day_converted_exactly
from tests.factories import SHORT_LEASE, wait_for_expired_claims
from tools.local_stack import airflow_environment, client

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


@BOTH_FORMATS
def test_ingest_then_end_of_day_converts_every_valid_row_once(dags, pipeline_stack):
    stack = pipeline_stack
    sample = land(stack, files=12)
    ingested = ingest(dags)
    assert str(ingested.state) == "success", task_states(ingested)
    eod = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(eod.state) == "success", task_states(eod)
    report = assert_day_converted_exactly(stack, sample)
    # The day's listing: 12 batches, the gzip file, the key with '#', '?', '%', '+', '//' and unicode in it, and the
    # overwritten key's new version convert; notes.txt (suffix) and the empty file are rejected at intake.
    assert report["files_by_state"] == {"DONE": 15, "QUARANTINED": 2}
    # Every result counted the paths it rescued: the sample's rescued rows are its values given as text.
    drift = report["drift"]
    assert (drift["manifests_unknown"], drift["new_fields"], drift["next_schema"]) == (0, [], None)
    assert drift["manifests"] >= 1
    assert [(m["path"], m["rows"], m["declared"]) for m in drift["mismatched"]] == [
        ("value", report["rows_rescued"], "double")
    ]
    awkward = next(k for k, _ in sample.uploads if "#" in k)
    assert f"s3://{stack.names.landing_bucket}/{awkward}" in parquet_source_uris(stack)
    # The overwritten key's first version is no longer in S3: quarantined as superseded, its rows never loaded.
    key, first_body = next((k, b) for k, b in sample.uploads if k.endswith("overwritten key.ndjson"))
    first = stack.ledger.get_file(f"{stack.names.landing_bucket}/{key}#{hashlib.md5(first_body).hexdigest()}")  # noqa: S324
    assert first.state == "QUARANTINED"
    assert first.reason.startswith("superseded")
    # Each converted manifest's asset event names where the Parquet is, from the settings the run used.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = (ingested.run_id, eod.run_id)
        extras = [e.extra for e in session.query(AssetEvent).filter(AssetEvent.source_run_id.in_(runs))]
    assert extras
    assert {e["uri"] for e in extras} == {stack.settings.layout.dataset_uri + "/"}
    assert {e["table_format"] for e in extras} == {stack.settings.table_format}
    assert sum(e["rows_out"] for e in extras) == len(parquet_event_ids(stack))


@BOTH_FORMATS
def test_glue_failure_then_success_on_retry(dags, pipeline_stack, monkeypatch):
    stack = pipeline_stack
    sample = land(stack, files=4)
    real_run = local_glue.run_glue_script_locally
    calls, left_for_the_retry = [], []

    def dies_first_time(script, arguments, **kwargs):
        layout, day, manifest_id = arguments.layout, arguments.day, arguments.manifest_id
        partial = [f"{layout.staging_uri(manifest_id)}/attempt-1/data/part-00000.parquet"]
        partial.append(layout.part_uri(day, manifest_id, 0, "snappy"))
        calls.append(partial)
        if len(calls) == 1:
            # The run staged a file and published half, then died: its publish log names what it published.
            PublishLog(frozenset(partial[1:])).write(stack.job_storage, layout.publish_log_uri(day, manifest_id))
            for uri in partial:
                stack.job_storage.write_bytes(uri, b"PAR1")
            raise local_glue.LocalGlueRunError(script, 1, "injected: executor lost")
        left_for_the_retry.extend(u for u in calls[0] if stack.storage.read_bytes_if_exists(u) is not None)
        return real_run(script, arguments, **kwargs)

    monkeypatch.setattr(local_glue, "run_glue_script_locally", dies_first_time)
    ingested = ingest(dags)
    assert str(ingested.state) == "success", task_states(ingested)
    assert len(calls) == 2
    # The retry callback stopped the failed run and removed its partial output before the retry ran.
    assert left_for_the_retry == []
    run(dags, "ndjson_end_of_day", day=sample.day)
    assert_day_converted_exactly(stack, sample)


def test_failure_past_max_attempts_ends_failed_with_alert(dags, aws_endpoint, monkeypatch):
    stack = make_stack(aws_endpoint, max_attempts=1)
    configure(stack, monkeypatch, max_attempts=1)
    sample = land(stack, files=2)

    def always_dies(*args, **kwargs):
        raise local_glue.LocalGlueRunError("injected: job crashes")

    monkeypatch.setattr(local_glue, "run_glue_script_locally", always_dies)
    ingested = ingest(dags)
    assert str(ingested.state) == "failed"
    assert task_states(ingested)["convert_manifest.finalise"] == ["failed"]
    # The alert: FailedFiles counted in CloudWatch (the alarm's metric) for the failed files.
    cloudwatch = client("cloudwatch", stack.endpoint)
    stats = cloudwatch.get_metric_statistics(
        Namespace=stack.settings.metrics_namespace,
        MetricName="FailedFiles",
        Dimensions=[{"Name": "Dataset", "Value": stack.settings.dataset}],
        StartTime=utcnow() - timedelta(hours=1),
        EndTime=utcnow() + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert sum(point["Sum"] for point in stats["Datapoints"]) >= 1
    report = day_report(stack.ledger, stack.storage, stack.settings, sample.day)
    assert report["not_terminal"] == []
    assert report["files_by_state"]["FAILED"] == len(sample.rows) - 1  # all but the superseded version
    assert parquet_event_ids(stack) == []


@pytest.mark.parametrize("table_format", ["hive", "iceberg"])
def test_sweeper_repairs_claims_whose_finaliser_never_ran(dags, aws_endpoint, monkeypatch, table_format):
    # The killed task's claims carry the shortest lease the settings accept; the DAG runs with the defaults.
    stack = make_stack(aws_endpoint, table_format=table_format, **SHORT_LEASE)
    configure(stack, monkeypatch)
    sample = land(stack, files=3)
    # A batching task claimed the files, then its worker was killed: nobody will finalise or compensate.
    drain_queue(stack.sqs, stack.queue_url, stack.ledger, stack.settings)
    orphans = plan_manifests(stack.ledger, stack.storage, stack.settings, [sample.day], owner="killed/run")
    assert orphans
    wait_for_expired_claims(stack, orphans)
    ingested = ingest(dags)
    assert str(ingested.state) == "success", task_states(ingested)
    for ref in orphans:
        assert stack.ledger.get_manifest(ref.manifest_id).state == "COMPENSATED"
    run(dags, "ndjson_end_of_day", day=sample.day)
    assert_day_converted_exactly(stack, sample)


@BOTH_FORMATS
def test_day_rerun_and_cleared_conversion_leave_identical_output(dags, pipeline_stack):
    stack = pipeline_stack
    sample = land(stack, files=5)
    ingest(dags)
    first = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(first.state) == "success", task_states(first)
    before = parquet_snapshot(stack)
    again = run(dags, "ndjson_end_of_day", day=sample.day)
    assert str(again.state) == "success", task_states(again)
    assert parquet_snapshot(stack) == before
    # A cleared conversion of a finished manifest: the operator finds it done and converts nothing.
    from airflow.sdk.exceptions import AirflowSkipException

    from ndjson_pipeline_airflow.operators import ManifestGlueJobOperator

    manifest_id = next(key for key in before if "part-" in key).split("part-", 1)[1][:29]
    ref = stack.ledger.get_manifest(manifest_id).ref()
    operator = ManifestGlueJobOperator(task_id="convert", manifest=ref.as_dict())
    with pytest.raises(AirflowSkipException, match="SUCCEEDED"):
        operator.execute({})
    assert parquet_snapshot(stack) == before
    assert_day_converted_exactly(stack, sample)


@BOTH_FORMATS
def test_end_of_day_overlapping_an_ingest_run(dags, pipeline_stack, tmp_path):
    """Both DAGs claim from the same day at once: no file is claimed twice, no row is written twice.

    The end-of-day run is a separate ``airflow dags test`` process with its own
    metadata database; what the two runs share is what matters: the ledger and S3.
    """
    stack = pipeline_stack
    sample = land(stack, files=16)
    drain_queue(stack.sqs, stack.queue_url, stack.ledger, stack.settings)
    env = {**os.environ, **airflow_environment(tmp_path / "eod-home")}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    with open(tmp_path / "eod.log", "wb") as log:
        eod = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow",
                "dags",
                "test",
                "ndjson_end_of_day",
                "-c",
                json.dumps({"day": sample.day}),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ingested = ingest(dags)
        assert eod.wait(timeout=600) == 0, (tmp_path / "eod.log").read_text()[-3000:]
    assert str(ingested.state) == "success", task_states(ingested)
    assert_day_converted_exactly(stack, sample)

"""The Airflow side's task logs: level and format as set, fields as task-log keys under json, no record content.

Each run is a child interpreter (``task_log_probe.py``) whose logging is an Airflow 3.3 task process's, and
whose task log is written as the supervisor writes it: the stored task log is one JSON object a line in both
formats (Airflow's), and ``log_format`` decides whether the pipeline's fields are keys of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ndjson_pipeline.clock import utcnow
from tests.factories import send
from tests.record_content import MARKER, assert_no_record_content, marked_files, marked_sqs_bodies
from tools.local_stack import local_pipeline_settings

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("task_log_probe.py")
# What Airflow's processors give every event (the call site's file and line: Airflow's default callsite_parameters).
AIRFLOW_KEYS = {"timestamp", "level", "event", "logger", "filename", "lineno"}
PIPELINE_LOGGERS = ("ndjson_pipeline.", "ndjson_pipeline_airflow.")


def _run_probe(stack, tmp_path: Path, log_format: str) -> tuple[list[dict], str]:
    """Land the marked files and bodies for today, run the day in a task process; its task log and the rest."""
    day = utcnow().date().isoformat()  # a day reconcile and the day report still accept
    prefix = f"{stack.settings.landing_prefix}{day.replace('-', '/')}/"
    bucket = stack.names.landing_bucket
    for name, body in marked_files(day).items():
        stack.s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)  # notified to the queue by S3
    send(stack, *marked_sqs_bodies(bucket, prefix + "marked.ndjson"))
    settings = local_pipeline_settings(stack.names, log_format=log_format, log_level="DEBUG")
    env = {
        **os.environ,
        **stack.identities.airflow_env(stack.endpoint),
        "AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS": json.dumps(settings),
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("include", "plugins", ".")),
    }
    probe = subprocess.run(
        [sys.executable, str(PROBE), day, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    task_log = (tmp_path / "task.log").read_text()
    assert_no_record_content(task_log, f"the task log ({log_format})")
    assert_no_record_content(probe.stdout + probe.stderr, "the task process's own output")
    return [json.loads(line) for line in task_log.splitlines()], day


def _pipeline(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("logger", "").startswith(PIPELINE_LOGGERS)]


def _marker_reached_the_quarantine(stack) -> bool:
    listed = stack.s3.list_objects_v2(Bucket=stack.names.quarantine_bucket)["Contents"]
    keys = [o["Key"] for o in listed if "/lines-" in o["Key"]]
    bodies = [stack.s3.get_object(Bucket=stack.names.quarantine_bucket, Key=k)["Body"].read().decode() for k in keys]
    return any(MARKER in body for body in bodies)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_task_logs_hold_no_record_content_and_debug_when_asked(stack, tmp_path, log_format):
    records, _ = _run_probe(stack, tmp_path, log_format)
    ours = _pipeline(records)

    assert _marker_reached_the_quarantine(stack)  # the content went through the pipeline
    intake = next(r for r in ours if r["logger"] == "ndjson_pipeline.steps.intake" and r["event"].startswith("intake"))
    assert "4 malformed" in intake["event"]  # the marked SQS bodies were received, and logged without their text
    # Airflow's own level is INFO: DEBUG lines came through because log_level asked for them.
    assert any(r["level"] == "debug" and r["logger"] == "ndjson_pipeline.steps.planning" for r in ours)
    # The call site is the pipeline's, not the handler that forwards the record.
    assert {r["filename"] for r in ours} >= {"intake.py", "planning.py", "finalising.py", "tasks.py"}
    if log_format == "text":
        assert all(set(r) == AIRFLOW_KEYS for r in ours), [set(r) - AIRFLOW_KEYS for r in ours]


def test_json_task_logs_carry_manifest_id_day_and_counts_as_keys(stack, tmp_path):
    records, day = _run_probe(stack, tmp_path, "json")
    ours = _pipeline(records)

    finalised = [r for r in ours if r["logger"] == "ndjson_pipeline.steps.finalising" and "finalised" in r["event"]]
    assert finalised, ours
    for record in finalised:
        assert record["manifest_id"] in record["event"]
        assert record["day"] == day
        assert record["rows_in"] == record["rows_out"] + record["rows_quarantined"] > 0
    intake = next(r for r in ours if r["logger"] == "ndjson_pipeline.steps.intake" and r["event"].startswith("intake"))
    assert (intake["malformed"], intake["days"]) == (4, [day])
    report = next(r for r in ours if r["event"].startswith("day report"))
    assert (report["day"], report["day_report"]["complete"]) == (day, True)
    assert all(set(r) >= AIRFLOW_KEYS for r in records)

"""The job's logs: the level and format its arguments ask for, fields in JSON, and never record content.

The in-process runs convert the manifest with its Spark tasks' code run in this
process (a Spark worker writes to the JVM's stderr, out of a test's reach), so
everything the driver and the tasks log is captured. The spark-submit run is the
real thing: the entry script, its Spark tasks in Python workers, and Spark's own
logs, all in one output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from ndjson_job.job import convert_manifest
from ndjson_job.logs import configure_job_logging
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.local_glue import run_glue_script_locally
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import DAY, LocalJob, make_local_job
from tests.glue.in_process import tasks_here
from tests.record_content import MARKER, assert_no_record_content, marked_files

SCRIPT = str(Path(__file__).resolve().parents[2] / "glue_scripts" / "ndjson_to_parquet.py")
# The text format: "2026-12-07 17:10:20,970 DEBUG ndjson_job.groups: file s3://... of manifest ...".
TEXT_LINE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR) ndjson_[a-z_.]+: \S")
JSON_KEYS = ("timestamp", "level", "event", "logger")


def _run_in_process(tmp_path: Path, monkeypatch, capsys, **args: str) -> tuple[LocalJob, JobResult, str]:
    """Convert the marked files as the entry script would, at DEBUG; the job, its result and everything logged."""
    spark = tasks_here(monkeypatch)
    bodies = {f"in/{name}": body for name, body in marked_files(DAY).items()}
    job = make_local_job(tmp_path, bodies, partitioning="event_time", log_level="DEBUG", **args)
    capsys.readouterr()
    configure_job_logging(job.arguments.logs)  # what ndjson_to_parquet.main does with the arguments
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    return job, result, capsys.readouterr().err


def _kept_data(job: LocalJob) -> str:
    """The text of what the job kept: quarantined lines and the Parquet rows, where the marker must be."""
    quarantined = "".join(p.read_text() for p in job.quarantine_dir.rglob("lines-*.json"))
    # Each row as JSON text: a timestamp with time zone fetched as a Python object would need pytz.
    rows = duckdb.sql(f"select to_json(t) from read_parquet('{job.lake_dir}/dt=*/*.parquet') t").fetchall()
    return quarantined + repr(rows)


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_job_logs_no_record_content_at_debug(tmp_path, monkeypatch, capsys, log_format, read_mode):
    job, result, logged = _run_in_process(tmp_path, monkeypatch, capsys, log_format=log_format, read_mode=read_mode)

    assert_no_record_content(logged, f"the job's {log_format} log")
    assert MARKER in _kept_data(job)  # the content was there to leak: in the quarantined lines and the rows
    assert result.rows_quarantined >= 8
    lines = logged.splitlines()
    # DEBUG reached the log: one line per file a task converted, besides the manifest's summary at INFO.
    assert sum("of manifest" in line and " rows in" in line and "file " in line for line in lines) == len(result.files)
    if log_format == "json":
        assert all(set(JSON_KEYS) <= set(json.loads(line)) for line in lines)
    else:
        assert all(TEXT_LINE.match(line) for line in lines), lines


def test_json_lines_carry_the_manifest_id_day_and_counts_as_fields(tmp_path, monkeypatch, capsys):
    job, result, logged = _run_in_process(tmp_path, monkeypatch, capsys, log_format="json")
    records = [json.loads(line) for line in logged.splitlines()]
    manifest_id = job.manifest.manifest_id

    summary = next(r for r in records if r["logger"] == "ndjson_job.job" and r["level"] == "info")
    assert manifest_id in summary["event"]  # the message still reads on its own
    assert {k: summary[k] for k in ("manifest_id", "day", "rows_in", "rows_out", "rows_quarantined", "files")} == {
        "manifest_id": manifest_id,
        "day": DAY,
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rows_quarantined": result.rows_quarantined,
        "files": len(result.files),
    }
    per_file = [r for r in records if r["logger"] == "ndjson_job.groups" and r["level"] == "debug"]
    assert sorted(r["uri"] for r in per_file) == sorted(f.uri for f in result.files)
    assert all((r["manifest_id"], r["day"]) == (manifest_id, DAY) for r in per_file)
    assert sum(r["rows_in"] for r in per_file) == result.rows_in
    assert {r["outcome"] for r in per_file} == {"DONE", "QUARANTINED"}


def test_the_level_argument_holds_back_what_is_below_it(tmp_path, monkeypatch, capsys):
    _, _, logged = _run_in_process(tmp_path, monkeypatch, capsys, log_format="json")
    assert any(json.loads(line)["level"] == "debug" for line in logged.splitlines())
    job = make_local_job(tmp_path / "quiet", {"in/a.ndjson": marked_files(DAY)["marked.ndjson"]}, log_level="warning")
    configure_job_logging(job.arguments.logs)
    convert_manifest(tasks_here(monkeypatch), job.arguments, Storage(bucket_root=job.bucket_root))
    assert capsys.readouterr().err == ""  # no warning in a clean run: neither the summary nor the per-file lines


@pytest.mark.spark
@pytest.mark.e2e
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_spark_submit_run_logs_as_told_in_driver_and_tasks_and_no_record_content(
    tmp_path, stack, monkeypatch, log_format
):
    """The settings' log_format and log_level reach the run as arguments; the Spark tasks' workers honour them."""
    files = []
    for name, body in marked_files(DAY).items():
        key = f"incoming/{name}"
        etag = stack.s3.put_object(Bucket=stack.names.landing_bucket, Key=key, Body=body)["ETag"].strip('"')
        files.append(FileVersion(bucket=stack.names.landing_bucket, key=key, etag=etag, size=len(body)))
    manifest = Manifest.for_files(DAY, files)
    settings = stack.settings.replace(log_format=log_format, log_level="DEBUG")
    arguments = settings.job_arguments(ManifestRef.of(manifest))
    stack.storage.write_bytes(arguments.manifest_uri, manifest.to_json().encode())
    for name, value in stack.identities.glue.env().items():  # driver and Spark tasks run as the Glue job role
        monkeypatch.setenv(name, value)
    output = tmp_path / "spark.log"

    run_glue_script_locally(SCRIPT, arguments, s3_endpoint=stack.endpoint, log_path=str(output))

    logged = output.read_text(errors="replace")
    assert_no_record_content(logged, "spark-submit's output (driver, tasks and Spark)")
    quarantined = stack.s3.list_objects_v2(Bucket=stack.names.quarantine_bucket, Prefix="events/")["Contents"]
    lines_key = next(o["Key"] for o in quarantined if "lines-" in o["Key"])
    body = stack.s3.get_object(Bucket=stack.names.quarantine_bucket, Key=lines_key)["Body"].read().decode()
    assert MARKER in body  # the content was there to leak
    if log_format == "json":
        ours = [json.loads(line) for line in logged.splitlines() if line.startswith('{"timestamp"')]
        per_file = [r for r in ours if r["logger"] == "ndjson_job.groups" and r["level"] == "debug"]
        summary = [r for r in ours if r["logger"] == "ndjson_job.job" and r["level"] == "info"]
        assert [r["manifest_id"] for r in summary] == [manifest.manifest_id]
    else:
        ours = [line for line in logged.splitlines() if TEXT_LINE.match(line)]
        per_file = [line for line in ours if " DEBUG ndjson_job.groups: file " in line]
        assert any(" INFO ndjson_job.job: manifest " in line for line in ours)
    # Written by the tasks' Python workers: the level and the format travelled with the tasks' work.
    assert len(per_file) == len(files)

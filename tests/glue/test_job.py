"""Job-level behaviour: arguments, reruns, a run that dies while publishing, superseded files."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pytest

from ndjson_job.job import convert_manifest
from ndjson_job.schema import JobArgumentError
from ndjson_pipeline.conversion import JobArguments, OptionError, parse_glue_argv
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestError
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import SCHEMA_PATH, make_local_job
from tests.glue.s3_faults import Fault, FaultyS3
from tools.local_stack import client
from tools.sample_data import ndjson_body

# About 870 KB of events over 6 files with 1% bad lines (type conflicts are rescued, so loaded):
# three output files at --target_file_mb 0.065 (of Parquet: about 190 KB).
FILES = {f"in/part-{n}.ndjson": ndjson_body(300, seed=n, bad_fraction=0.01, prefix=f"p{n}") for n in range(6)}
BODIES = {key: body for key, (body, _) in FILES.items()}
EXPECTED_IDS = sorted(
    json.loads(line)["event_id"]
    for body in BODIES.values()
    for line in body.decode().splitlines()
    if line.startswith("{") and line.endswith("}")
)


def _make_job(tmp_path: Path, **overrides: str):
    return make_local_job(tmp_path, BODIES, **{"target_file_mb": "0.065", **overrides})


def _lake_rows(job) -> list[tuple]:
    pattern = f"{job.lake_dir}/dt=*/*.parquet"
    return duckdb.sql(f"select event_id, _source_uri, _manifest_id from read_parquet('{pattern}')").fetchall()


def _lake_files(job) -> list[str]:
    root = job.lake_dir
    return sorted(str(p.relative_to(root)) for p in root.glob("dt=*/*.parquet"))


class FailingStorage(Storage):
    """Local storage whose copies fail after ``copies_before_failure`` of them: a run that dies mid-publish."""

    def __init__(self, copies_before_failure: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.remaining = copies_before_failure

    def copy(self, source: str, target: str) -> None:
        if self.remaining == 0:
            raise RuntimeError("injected fault: the job dies while publishing")
        self.remaining -= 1
        super().copy(source, target)


def test_glue_system_arguments_are_tolerated():
    argv = ["script.py", "--JOB_NAME", "convert", "--job-bookmark-option", "job-bookmark-disable", "--TempDir"]
    argv += ["s3://tmp/x", "--enable-metrics", "--manifest_id", "20261124-abc", "--day=2026-11-24"]
    argv += [
        "--lake_root",
        "s3://lake",
        "--quarantine_root",
        "s3://q",
        "--dataset",
        "e",
        "--schema_uri",
        "s3://b/s.json",
    ]
    arguments = JobArguments.from_argv(argv)
    assert arguments.manifest_uri == "s3://lake/_pipeline/manifests/dt=2026-11-24/20261124-abc.json"
    assert arguments.result_uri == "s3://lake/_pipeline/results/dt=2026-11-24/20261124-abc.json"
    options = arguments.options
    assert options.read_mode == "rescue"
    assert (options.compression, options.partitioning, options.target_file_mb, options.lineage) == (
        "snappy",
        "arrival",
        128.0,
        True,
    )
    assert parse_glue_argv(argv)["enable-metrics"] == "true"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"read_mode": "lenient"}, "--read_mode"),
        ({"compression": "lz4"}, "--compression"),
        ({"partitioning": "hourly"}, "--partitioning"),
        ({"target_file_mb": "big"}, "--target_file_mb"),
        ({"max_raw_chars": "0"}, "--max_raw_chars"),
        ({"lineage": "maybe"}, "--lineage"),
        ({"lake_root": "s3://lake/"}, "--lake_root"),
        ({"manifest_id": ""}, "--manifest_id"),
        ({"event_time_field": "a..b"}, "--event_time_field"),
        ({"day": "24/11/2026"}, "--day"),
    ],
)
def test_invalid_arguments_are_named(override, named):
    args = {"manifest_id": "20261124-abc", "day": "2026-11-24", "lake_root": "l", "quarantine_root": "q"}
    args |= {"dataset": "events", "schema_uri": "s.json", **override}
    with pytest.raises(OptionError, match=named):
        JobArguments.from_glue_args(args)


def test_arguments_round_trip_through_the_glue_command_line():
    arguments = JobArguments.from_glue_args(
        {"manifest_id": "20261124-abc", "day": "2026-11-24", "lake_root": "s3://l", "quarantine_root": "s3://q"}
        | {"dataset": "events", "schema_uri": "s3://a/s.json", "read_mode": "STRICT", "target_file_mb": "0.5"}
    )
    argv = ["script.py", *[part for pair in arguments.to_glue_args().items() for part in pair]]
    assert JobArguments.from_argv(argv) == arguments
    assert arguments.options.read_mode == "strict"


@pytest.mark.spark
def test_running_a_manifest_twice_gives_the_output_of_one_run(tmp_path, spark):
    job = _make_job(tmp_path)
    # Another manifest publishing into the same lake must be left alone by reruns of the first.
    shared = {name: job.args[name] for name in ("lake_root", "quarantine_root")}
    other = make_local_job(tmp_path / "other", {"x.ndjson": ndjson_body(5, prefix="other")[0]}, **shared)
    other_result = convert_manifest(spark, other.arguments, Storage(bucket_root=other.bucket_root))

    first = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    files_after_first = _lake_files(job)
    second = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))

    rows = [r for r in _lake_rows(job) if r[2] == job.manifest.manifest_id]
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == len(EXPECTED_IDS) == second.rows_out
    assert sorted(ids) == EXPECTED_IDS
    assert _lake_files(job) == files_after_first
    assert len([f for f in files_after_first if job.manifest.manifest_id in f]) == 3
    assert [(f.identity, f.rows_out, f.rows_quarantined) for f in first.files] == [
        (f.identity, f.rows_out, f.rows_quarantined) for f in second.files
    ]
    assert sorted(r[0] for r in _lake_rows(job) if r[2] == other.manifest.manifest_id) == sorted(
        f"other-{n}" for n in range(5)
    )
    assert other_result.rows_out == 5


@pytest.mark.spark
def test_a_run_that_dies_while_publishing_then_a_rerun_equal_one_clean_run(tmp_path, spark):
    clean = _make_job(tmp_path / "clean")
    clean_result = convert_manifest(spark, clean.arguments, Storage(bucket_root=clean.bucket_root))

    job = _make_job(tmp_path / "faulty")
    # First a complete run, then a rerun that dies after publishing one of three files, then a rerun.
    convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    with pytest.raises(RuntimeError, match="injected fault"):
        convert_manifest(spark, job.arguments, FailingStorage(copies_before_failure=1, bucket_root=job.bucket_root))
    assert not job.result_path.exists(), "a dead run leaves no completion marker"
    ids_while_dead = [r[0] for r in _lake_rows(job)]
    assert len(ids_while_dead) == len(set(ids_while_dead)), "half-published output never duplicates rows"
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))

    ids = [r[0] for r in _lake_rows(job)]
    assert len(ids) == len(set(ids)) == clean_result.rows_out == result.rows_out
    assert sorted(ids) == sorted(r[0] for r in _lake_rows(clean)) == EXPECTED_IDS
    assert _lake_files(job) == _lake_files(clean)
    assert not list(Path(job.arguments.layout.work_uri).glob("staging/*"))
    written = JobResult.from_json(job.result_path.read_text())
    assert [o.rows for o in written.output_files] == [o.rows for o in clean_result.output_files]


def test_the_publish_log_lists_every_object_a_dead_run_published(tmp_path, spark):
    """What compensation relies on to remove a failed run's partial output."""
    job = _make_job(tmp_path)
    with pytest.raises(RuntimeError, match="injected fault"):
        convert_manifest(spark, job.arguments, FailingStorage(copies_before_failure=2, bucket_root=job.bucket_root))
    logged = set(json.loads(job.publish_log_path.read_text())["uris"])
    published = {str(p) for p in job.lake_dir.glob("dt=*/*.parquet")}
    assert len(published) == 2
    assert published <= logged


@pytest.mark.spark
def test_a_run_that_dies_before_its_first_publish_leaves_no_output(tmp_path, spark):
    job = _make_job(tmp_path)
    with pytest.raises(RuntimeError, match="injected fault"):
        convert_manifest(spark, job.arguments, FailingStorage(copies_before_failure=0, bucket_root=job.bucket_root))
    assert _lake_files(job) == []
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    assert sorted(r[0] for r in _lake_rows(job)) == EXPECTED_IDS == sorted({r[0] for r in _lake_rows(job)})
    assert result.rows_out == len(EXPECTED_IDS)


@pytest.mark.spark
def test_a_file_replaced_after_the_manifest_was_written_is_superseded(tmp_path, spark):
    job = make_local_job(
        tmp_path,
        {"a.ndjson": ndjson_body(3, prefix="a")[0], "b.ndjson": ndjson_body(4, prefix="b")[0]},
        lineage="false",
    )
    Path(job.bucket_root, "landing", "b.ndjson").write_bytes(ndjson_body(9, prefix="b2")[0])
    result = convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    outcomes = {f.uri.rsplit("/", 1)[1]: f for f in result.files}
    assert (outcomes["a.ndjson"].outcome, outcomes["a.ndjson"].rows_out) == ("DONE", 3)
    assert outcomes["b.ndjson"].outcome == "QUARANTINED"
    assert outcomes["b.ndjson"].reason.startswith("superseded")
    pattern = f"{job.lake_dir}/dt=*/*.parquet"
    assert sorted(r[0] for r in duckdb.sql(f"select event_id from read_parquet('{pattern}')").fetchall()) == [
        "a-0",
        "a-1",
        "a-2",
    ]
    columns = [r[0] for r in duckdb.sql(f"describe select * from read_parquet('{pattern}')").fetchall()]
    assert "_source_uri" not in columns
    assert "_rescued_data" in columns


@pytest.mark.spark
def test_a_manifest_id_argument_that_does_not_match_the_manifest_fails(tmp_path, spark):
    job = make_local_job(tmp_path, {"a.ndjson": ndjson_body(2, prefix="a")[0]}, manifest_id="20261124-other")
    with pytest.raises(JobArgumentError, match="--manifest_id"):
        convert_manifest(spark, job.arguments, Storage(bucket_root=job.bucket_root))
    assert not job.result_path.exists()


def test_a_manifest_listing_a_file_version_twice_is_refused(tmp_path):
    job = make_local_job(tmp_path, {"a.ndjson": ndjson_body(2, prefix="a")[0]})
    doc = json.loads(job.manifest.to_json())
    doc["files"] *= 2
    doc["manifest_id"] = Manifest.for_files(job.manifest.day, list(job.manifest.files) * 2).manifest_id
    with pytest.raises(ManifestError, match=r"lists landing/a\.ndjson#\w+ more than once"):
        Manifest.from_json(json.dumps(doc))


@pytest.mark.spark
def test_a_file_the_job_cannot_read_is_quarantined_and_the_rest_of_the_manifest_converts(tmp_path, spark, aws_endpoint):
    """A 403 on one file (a KMS key the role cannot use) costs that file, not the run and its 98 neighbours."""
    s3, bucket = client("s3", aws_endpoint), f"job-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    files = []
    bodies = {"in/ok.ndjson": BODIES["in/part-0.ndjson"], "in/locked.ndjson": BODIES["in/part-1.ndjson"]}
    for key, body in bodies.items():
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        files.append(FileVersion(bucket, key, etag, len(body)))
    manifest = Manifest.for_files("2026-11-24", files)
    s3.put_object(Bucket=bucket, Key="schema.json", Body=SCHEMA_PATH.read_bytes())
    arguments = JobArguments(
        manifest.manifest_id,
        manifest.day,
        LakeLayout(f"s3://{bucket}/lake", f"s3://{bucket}/quarantine", "events"),
        f"s3://{bucket}/schema.json",
    )
    s3.put_object(Bucket=bucket, Key=arguments.manifest_uri.removeprefix(f"s3://{bucket}/"), Body=manifest.to_json())
    with FaultyS3(aws_endpoint) as proxy:
        proxy.faults.append(Fault("in/locked.ndjson", status=403, code="AccessDenied", message="Access Denied"))
        result = convert_manifest(spark, arguments, Storage(endpoint_url=proxy.endpoint, max_attempts=2))
    outcomes = {f.uri.rsplit("/", 1)[1]: f for f in result.files}
    assert (outcomes["locked.ndjson"].outcome, outcomes["locked.ndjson"].reason) == (
        "QUARANTINED",
        "unreadable: AccessDenied: Access Denied",
    )
    assert outcomes["ok.ndjson"].outcome == "DONE"
    assert result.rows_out == outcomes["ok.ndjson"].rows_out > 0
    files_key = arguments.layout.quarantined_files_uri(manifest.day, manifest.manifest_id)
    record = json.loads(s3.get_object(Bucket=bucket, Key=files_key.removeprefix(f"s3://{bucket}/"))["Body"].read())
    assert (record["uri"], record["reason"]) == (f"s3://{bucket}/in/locked.ndjson", outcomes["locked.ndjson"].reason)

"""Output groups: how files are grouped, what one task converts and isolates, and how tasks import the job."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from ndjson_job import output as output_module
from ndjson_job import reading as reading_module
from ndjson_job.groups import (
    BYTES_PER_PARQUET_BYTE,
    NDJSON_BYTES_PER_PARQUET_BYTE,
    GroupOutput,
    GroupWork,
    convert_group,
    expected_parquet_bytes,
    files_for_size,
    plan_groups,
)
from ndjson_job.lines import LineRules
from ndjson_job.schema import arrow_schema, parse_schema
from ndjson_pipeline.conversion import ConversionOptions, JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.storage import Storage
from tests.glue.conftest import DAY, SCHEMA_PATH
from tests.glue.s3_faults import Fault, FaultyS3
from tools.local_stack import client
from tools.sample_data import ndjson_body

MiB = 1024 * 1024
_ARGS = JobArguments("m-1", DAY, LakeLayout("s3://lake", "s3://quarantine", "events"), str(SCHEMA_PATH))


def _make_file(n: int, size: int, **overrides) -> FileVersion:
    return FileVersion(**{"bucket": "landing", "key": f"in/{n:03d}.ndjson", "etag": f"e{n}", "size": size, **overrides})


def test_file_count_follows_output_size():
    assert files_for_size(10 * 1024 * 1024, 128) == 1
    assert files_for_size(99 * int(3.5 * 1024 * 1024), 128) == 3


def test_a_file_counts_for_the_parquet_it_becomes_text_gzip_or_parquet():
    text, gzipped, parquet = (_make_file(0, 90 * MiB, key=key) for key in ("a.ndjson", "b.ndjson.GZ", "dt=x/c.parquet"))
    assert expected_parquet_bytes(text) == 90 * MiB / NDJSON_BYTES_PER_PARQUET_BYTE
    assert expected_parquet_bytes(gzipped) == 90 * MiB / BYTES_PER_PARQUET_BYTE[".gz"] > 90 * MiB
    assert expected_parquet_bytes(parquet) == 90 * MiB
    # 128 MB of Parquet: a group of 576 MB of text, of 96 MB of gzip.
    assert len(plan_groups([_make_file(n, 100 * MiB) for n in range(6)], target_file_mb=128)) == 2
    assert len(plan_groups([_make_file(n, 60 * MiB, key=f"{n}.gz") for n in range(6)], target_file_mb=128)) == 4


def test_groups_are_near_equal_and_do_not_depend_on_manifest_order():
    files = [_make_file(n, (n % 7 + 1) * MiB) for n in range(40)]
    groups = plan_groups(files, target_file_mb=8)
    assert plan_groups(reversed(files), target_file_mb=8) == groups
    assert sorted(f.uri for group in groups for f in group) == sorted(f.uri for f in files)
    loads = [sum(f.size for f in group) for group in groups]
    assert len(groups) == files_for_size(sum(map(expected_parquet_bytes, files)), 8) == 5
    assert max(loads) - min(loads) <= 2 * 7 * MiB  # each within about a file of its share
    # Runs of consecutive keys: a group's files (and its output file) cover a slice of the day.
    assert [f.uri for group in groups for f in group] == sorted(f.uri for f in files)


def test_there_are_never_more_groups_than_files():
    assert len(plan_groups([_make_file(0, 900 * MiB), _make_file(1, 800 * MiB)], target_file_mb=1)) == 2
    assert plan_groups([], target_file_mb=1) == []


@pytest.mark.spark
def test_tasks_import_the_job_from_its_zip_not_from_the_source_tree(spark):
    def where(_):
        import pyarrow

        import ndjson_job.groups
        import ndjson_pipeline.manifest

        return ndjson_job.groups.__file__, ndjson_pipeline.manifest.__file__, pyarrow.__version__

    [(job, contract, task_pyarrow)] = spark.sparkContext.parallelize([0], 1).map(where).collect()
    assert job.endswith("ndjson_job.zip/ndjson_job/groups.py")
    assert contract.endswith("ndjson_pipeline.zip/ndjson_pipeline/manifest.py")
    assert task_pyarrow == pa.__version__, "tasks run on this environment's pyarrow (the Glue version under test)"


# --------------------------------------------------------------------------- one task: what it isolates


def _make_work(storage: Storage, files: list[FileVersion], staging: str, **options) -> GroupWork:
    schema = parse_schema(SCHEMA_PATH.read_text(), _ARGS)
    rules = LineRules(schema=arrow_schema(schema), day=DAY, options=ConversionOptions(**options))
    return GroupWork(index=0, files=tuple(files), rules=rules, storage=storage, staging=staging, manifest_id="m-1")


def _staged_ids(output: GroupOutput) -> list[str]:
    return sorted(i for part in output.parts for i in pq.read_table(part.uri, columns=["event_id"])[0].to_pylist())


def _staged_lines(output: GroupOutput) -> list[dict]:
    if output.lines is None:
        return []
    return [json.loads(line) for line in Path(output.lines.uri).read_text().splitlines()]


def _local_files(root: Path, bodies: dict[str, bytes]) -> list[FileVersion]:
    files = []
    for key, body in bodies.items():
        (root / "landing").mkdir(parents=True, exist_ok=True)
        (root / "landing" / key).write_bytes(body)
        files.append(FileVersion("landing", key, hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body)))
    return files


GOOD = {name: ndjson_body(300, seed=n, prefix=name[0])[0] for n, name in enumerate(["a.ndjson", "c.ndjson"])}
GOOD_IDS = sorted(json.loads(line)["event_id"] for body in GOOD.values() for line in body.splitlines())
BIG_BODY = ndjson_body(4000, seed=7, prefix="b")[0]  # about 1.9 MB


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
@pytest.mark.parametrize(
    ("body", "options", "reason"),
    [
        (gzip.compress(BIG_BODY)[:-200], {}, "undecodable gzip"),
        (BIG_BODY, {"max_decompressed_mb": "1"}, "too large: over 1 MB"),
    ],
    ids=["truncated gzip", "too large"],
)
def test_a_file_quarantined_after_its_rows_were_written_publishes_none_of_them(
    tmp_path, monkeypatch, capsys, read_mode, body, options, reason
):
    """Row groups small enough that the bad file's rows are written before its end shows what it is."""
    monkeypatch.setattr(output_module, "ROW_GROUP_BYTES", 64 * 1024)
    monkeypatch.setattr(reading_module, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(reading_module, "READ_BYTES", 64 * 1024)
    name = "b.ndjson.gz" if reason.startswith("undecodable") else "b.ndjson"
    files = _local_files(tmp_path, {"a.ndjson": GOOD["a.ndjson"], name: body, "c.ndjson": GOOD["c.ndjson"]})
    storage = Storage(bucket_root=str(tmp_path))
    work = _make_work(storage, files, str(tmp_path / "staging"), read_mode=read_mode, **options)

    output = convert_group(work)

    results = {r.uri.rsplit("/", 1)[1]: r for r in output.files}
    assert (results[name].outcome, results[name].rows_out) == ("QUARANTINED", 0)
    assert results[name].reason.startswith(reason)
    assert _staged_ids(output) == GOOD_IDS
    assert not [line for line in _staged_lines(output) if line["uri"].endswith(name)]
    # The task logs as the job's logging setup says: to stderr, text at INFO by default.
    assert "converting group 0 of manifest m-1 again without it" in capsys.readouterr().err


def test_invalid_utf8_late_in_a_large_file_quarantines_it_whole_in_strict_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(output_module, "ROW_GROUP_BYTES", 64 * 1024)
    monkeypatch.setattr(reading_module, "BLOCK_BYTES", 64 * 1024)
    files = _local_files(tmp_path, {"a.ndjson": GOOD["a.ndjson"], "b.ndjson": BIG_BODY + b'{"event_id": "\xff"}\n'})
    work = _make_work(Storage(bucket_root=str(tmp_path)), files, str(tmp_path / "staging"), read_mode="strict")
    output = convert_group(work)
    results = {r.uri.rsplit("/", 1)[1]: r for r in output.files}
    assert (results["b.ndjson"].reason, results["b.ndjson"].rows_quarantined) == ("invalid UTF-8", 4001)
    assert _staged_ids(output) == sorted(i for i in GOOD_IDS if i.startswith("a"))


@pytest.fixture
def bucket(aws_endpoint) -> str:
    name = f"groups-{uuid.uuid4().hex[:12]}"
    client("s3", aws_endpoint).create_bucket(Bucket=name)
    return name


def _s3_files(endpoint: str, bucket: str, bodies: dict[str, tuple[bytes, dict]]) -> list[FileVersion]:
    s3, files = client("s3", endpoint), []
    for key, (body, extra) in bodies.items():
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"].strip('"')
        files.append(FileVersion(bucket, key, etag, len(body)))
    return files


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
def test_files_the_job_cannot_read_are_quarantined_with_the_reason_and_the_others_convert(
    aws_endpoint, bucket, read_mode, tmp_path
):
    bodies = {name: (body, {}) for name, body in GOOD.items()}
    bodies |= {"denied.ndjson": (GOOD["a.ndjson"], {}), "cold.ndjson": (GOOD["c.ndjson"], {"StorageClass": "GLACIER"})}
    files = _s3_files(aws_endpoint, bucket, bodies)
    with FaultyS3(aws_endpoint) as proxy:
        message = "The ciphertext refers to a customer master key that does not exist"
        proxy.faults.append(Fault("denied.ndjson", status=403, code="AccessDenied", message=message))
        storage = Storage(endpoint_url=proxy.endpoint, max_attempts=2)
        output = convert_group(_make_work(storage, files, f"s3://{bucket}/staging", read_mode=read_mode))
    results = {r.uri.rsplit("/", 1)[1]: r for r in output.files}
    assert results["denied.ndjson"].reason == f"unreadable: AccessDenied: {message}"
    assert results["cold.ndjson"].reason.startswith("unreadable: InvalidObjectState")
    assert [results[name].outcome for name in GOOD] == ["DONE", "DONE"]
    s3 = client("s3", aws_endpoint)
    local = tmp_path / "part.parquet"
    [part] = output.parts
    local.write_bytes(s3.get_object(Bucket=bucket, Key=part.uri.removeprefix(f"s3://{bucket}/"))["Body"].read())
    assert sorted(pq.read_table(local, columns=["event_id"])[0].to_pylist()) == GOOD_IDS


@pytest.mark.parametrize("read_mode", ["rescue", "strict"])
def test_a_transient_error_that_persists_fails_the_task_rather_than_quarantining_the_file(
    aws_endpoint, bucket, read_mode
):
    files = _s3_files(aws_endpoint, bucket, {name: (body, {}) for name, body in GOOD.items()})
    with FaultyS3(aws_endpoint) as proxy:
        proxy.faults.append(Fault("c.ndjson", status=503, code="SlowDown"))
        storage = Storage(endpoint_url=proxy.endpoint, max_attempts=2)
        with pytest.raises(ClientError, match="SlowDown"):
            convert_group(_make_work(storage, files, f"s3://{bucket}/staging", read_mode=read_mode))

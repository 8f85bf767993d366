"""The job script end to end: spark-submit, Glue-style arguments, S3 on the moto server.

The S3 run uses what a deploy uploads: the built script alone in its folder and the two
built zips as ``--py-files`` (Glue's ``--extra-py-files``), with no PYTHONPATH, so it
fails if the artifacts do not work together on their own.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pytest

from ndjson_pipeline.conversion import ConversionOptions, JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.local_glue import LocalGlueRunError, run_glue_script_locally
from ndjson_pipeline.manifest import JobResult, Manifest
from tests.glue.conftest import DAY, SCHEMA_PATH
from tools.build_artifacts import build
from tools.local_stack import client
from tools.sample_data import gzip_body, ndjson_body

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

SCRIPT = str(Path(__file__).resolve().parents[2] / "glue_scripts" / "ndjson_to_parquet.py")


def _built_job(out: Path) -> tuple[str, list[str]]:
    """The deployable Glue script and its --extra-py-files zips, in the order deploy prints them."""
    paths = {a["kind"]: str(out / a["path"]) for a in build(out)["artifacts"]}
    return paths["glue_script"], [paths["glue_python"], paths["glue_job_python"]]


def test_job_script_converts_a_manifest_on_s3(tmp_path, aws_endpoint, monkeypatch):
    s3 = client("s3", aws_endpoint)
    bucket = f"glue-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    plain, kinds = ndjson_body(300, seed=1, bad_fraction=0.05, prefix="s3")
    bodies = {
        "landing/a b.ndjson": plain,
        "landing/c.ndjson.gz": gzip_body(ndjson_body(20, seed=2, prefix="gz")[0]),
        "landing/broken.ndjson.gz": gzip_body(plain)[:-100],
    }
    files = []
    for key, body in bodies.items():
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        files.append(FileVersion(bucket=bucket, key=key, etag=etag, size=len(body)))
    manifest = Manifest.for_files(DAY, files)
    s3.put_object(Bucket=bucket, Key="schemas/events.json", Body=SCHEMA_PATH.read_bytes())
    arguments = JobArguments(
        manifest_id=manifest.manifest_id,
        day=DAY,
        layout=LakeLayout(f"s3://{bucket}/lake", f"s3://{bucket}/quarantine", "events"),
        schema_uri=f"s3://{bucket}/schemas/events.json",
        options=ConversionOptions(compression="zstd"),
    )
    manifest_key = arguments.manifest_uri.removeprefix(f"s3://{bucket}/")
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=manifest.to_json().encode())
    script, py_files = _built_job(tmp_path / "dist")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    run_glue_script_locally(
        script, arguments, s3_endpoint=aws_endpoint, py_files=py_files, log_path=str(tmp_path / "spark.log")
    )

    result_key = arguments.result_uri.removeprefix(f"s3://{bucket}/")
    result = JobResult.from_json(s3.get_object(Bucket=bucket, Key=result_key)["Body"].read())
    result.check_reconciled(manifest)
    outcomes = {f.uri.rsplit("/", 1)[1]: f for f in result.files}
    expected_out = kinds["good"] + kinds["type_conflict"]
    assert (outcomes["a b.ndjson"].rows_out, outcomes["c.ndjson.gz"].rows_out) == (expected_out, 20)
    assert outcomes["broken.ndjson.gz"].outcome == "QUARANTINED"

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="lake/events/")["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert keys == [f"lake/events/dt={DAY}/part-{manifest.manifest_id}-00000.zstd.parquet"]
    local = tmp_path / "out.parquet"
    local.write_bytes(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    ids = [r[0] for r in duckdb.sql(f"select event_id from read_parquet('{local}')").fetchall()]
    assert len(ids) == len(set(ids)) == result.rows_out == expected_out + 20
    quarantine = s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/")["Contents"]
    names = sorted(o["Key"].rsplit("/", 1)[1] for o in quarantine)
    assert names == ["files.json", "lines-00000.json"]
    lines = s3.get_object(Bucket=bucket, Key=next(o["Key"] for o in quarantine if "lines-" in o["Key"]))["Body"]
    assert len(lines.read().decode().splitlines()) == kinds["malformed"] + kinds["not_object"]


def test_a_failing_script_raises_with_its_exit_code_and_output(tmp_path):
    layout = LakeLayout(str(tmp_path / "lake"), str(tmp_path / "q"), "events")
    args = JobArguments(manifest_id="20261124-missing", day=DAY, layout=layout, schema_uri="x.json")
    with pytest.raises(LocalGlueRunError, match=r"20261124-missing\.json") as failure:
        run_glue_script_locally(SCRIPT, args, s3_endpoint=None, timeout_seconds=300)
    assert failure.value.exit_code not in (0, None)
    assert json.dumps(failure.value.tail)

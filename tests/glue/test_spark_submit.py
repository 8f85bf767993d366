"""The job script end to end: spark-submit, Glue-style arguments, S3 on the moto server.

The S3 run uses what a deploy uploads: the built script alone in its folder and the two
built zips as ``--py-files`` (Glue's ``--extra-py-files``), with no PYTHONPATH, so it
fails if the artifacts do not work together on their own. It runs as the Glue job role's
local identity over the pipeline's buckets, so every call of the driver and of the Spark
tasks is held to the role's policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from ndjson_pipeline.conversion import ConversionOptions, JobArguments
from ndjson_pipeline.files import FileVersion
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.local_glue import LocalGlueRunError, run_glue_script_locally
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from tests.glue.conftest import DAY
from tools import iam_report
from tools.build_artifacts import build
from tools.sample_data import gzip_body, ndjson_body

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

SCRIPT = str(Path(__file__).resolve().parents[2] / "glue_scripts" / "ndjson_to_parquet.py")


def _built_job(out: Path) -> tuple[str, list[str]]:
    """The deployable Glue script and its --extra-py-files zips, in the order deploy prints them."""
    paths = {a["kind"]: str(out / a["path"]) for a in build(out)["artifacts"]}
    return paths["glue_script"], [paths["glue_python"], paths["glue_job_python"]]


def test_job_script_converts_a_manifest_on_s3(tmp_path, stack, monkeypatch):
    s3, names = stack.s3, stack.names
    plain, kinds = ndjson_body(300, seed=1, bad_fraction=0.05, prefix="s3")
    bodies = {
        "incoming/a b.ndjson": plain,
        "incoming/c.ndjson.gz": gzip_body(ndjson_body(20, seed=2, prefix="gz")[0]),
        "incoming/broken.ndjson.gz": gzip_body(plain)[:-100],
    }
    files = []
    for key, body in bodies.items():
        etag = s3.put_object(Bucket=names.landing_bucket, Key=key, Body=body)["ETag"].strip('"')
        files.append(FileVersion(bucket=names.landing_bucket, key=key, etag=etag, size=len(body)))
    manifest = Manifest.for_files(DAY, files)
    settings = stack.settings.replace(conversion=ConversionOptions(compression="zstd"))
    arguments = settings.job_arguments(ManifestRef.of(manifest))
    stack.storage.write_bytes(arguments.manifest_uri, manifest.to_json().encode())
    script, py_files = _built_job(tmp_path / "dist")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    for name, value in stack.identities.glue.env().items():  # driver and Spark tasks run as the Glue job role
        monkeypatch.setenv(name, value)
    root_calls = _count(stack.endpoint, "root")
    run_glue_script_locally(
        script, arguments, s3_endpoint=stack.endpoint, py_files=py_files, log_path=str(tmp_path / "spark.log")
    )
    glue = stack.identities.glue.user
    assert iam_report.denials(stack.endpoint, glue) == []
    assert _count(stack.endpoint, "root") == root_calls, "some of the job's calls were not made as the Glue role"
    landing_reads = [c for c in iam_report.calls(stack.endpoint, glue) if c["statement"] == "LandingRead"]
    assert sum(c["count"] for c in landing_reads) == len(bodies)  # the Spark tasks' reads, as the Glue role

    result = JobResult.from_json(stack.storage.read_bytes(arguments.result_uri))
    result.check_reconciled(manifest)
    outcomes = {f.uri.rsplit("/", 1)[1]: f for f in result.files}
    expected_out = kinds["good"] + kinds["type_conflict"]
    assert (outcomes["a b.ndjson"].rows_out, outcomes["c.ndjson.gz"].rows_out) == (expected_out, 20)
    assert outcomes["broken.ndjson.gz"].outcome == "QUARANTINED"

    listed = s3.list_objects_v2(Bucket=names.lake_bucket, Prefix="events/")["Contents"]
    keys = sorted(o["Key"] for o in listed)
    assert keys == [f"events/dt={DAY}/part-{manifest.manifest_id}-00000.zstd.parquet"]
    local = tmp_path / "out.parquet"
    local.write_bytes(s3.get_object(Bucket=names.lake_bucket, Key=keys[0])["Body"].read())
    ids = [r[0] for r in duckdb.sql(f"select event_id from read_parquet('{local}')").fetchall()]
    assert len(ids) == len(set(ids)) == result.rows_out == expected_out + 20
    quarantine = s3.list_objects_v2(Bucket=names.quarantine_bucket, Prefix="events/")["Contents"]
    quarantined = sorted(o["Key"].rsplit("/", 1)[1] for o in quarantine)
    assert quarantined == ["files.json", "lines-00000.json"]
    lines_key = next(o["Key"] for o in quarantine if "lines-" in o["Key"])
    lines = s3.get_object(Bucket=names.quarantine_bucket, Key=lines_key)["Body"]
    assert len(lines.read().decode().splitlines()) == kinds["malformed"] + kinds["not_object"]


def _count(endpoint: str, identity: str) -> int:
    return sum(c["count"] for c in iam_report.calls(endpoint, identity))


def test_a_failing_script_raises_with_its_exit_code_and_output(tmp_path):
    layout = LakeLayout(str(tmp_path / "lake"), str(tmp_path / "q"), "events")
    args = JobArguments(manifest_id="20261124-missing", day=DAY, layout=layout, schema_uri="x.json")
    with pytest.raises(LocalGlueRunError, match=r"20261124-missing\.json") as failure:
        run_glue_script_locally(SCRIPT, args, s3_endpoint=None, timeout_seconds=300)
    assert failure.value.exit_code not in (0, None)
    assert json.dumps(failure.value.tail)

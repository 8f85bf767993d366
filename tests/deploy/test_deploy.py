"""tools.deploy against the moto server: dry runs touch nothing, real runs put the build's keys."""

from __future__ import annotations

import json
import uuid

import pytest

from ndjson_pipeline.resources import ResourceNames
from tools import deploy
from tools.local_stack import client


def _make_target(endpoint: str, **overrides):
    names = ResourceNames(overrides.pop("name_prefix", f"dp-{uuid.uuid4().hex[:10]}"))
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=names.assets_bucket)
    s3.put_bucket_versioning(Bucket=names.assets_bucket, VersioningConfiguration={"Status": "Enabled"})
    return names, s3


def _keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def _deploy(dist, names, endpoint, *extra) -> int:
    return deploy.main(
        [
            "--dist",
            str(dist),
            "--name-prefix",
            names.name_prefix,
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            *extra,
        ]
    )


def test_dry_run_touches_nothing(built, aws_endpoint, capsys):
    dist, document = built
    names, s3 = _make_target(aws_endpoint)
    s3.put_object(Bucket=names.assets_bucket, Key="dags/old_dag.py", Body=b"# stale")

    assert _deploy(dist, names, aws_endpoint, "--dry-run") == 0

    assert _keys(s3, names.assets_bucket) == {"dags/old_dag.py"}
    printed = capsys.readouterr().out
    for artifact in document["artifacts"]:
        assert artifact["key"] in printed


def test_deploy_puts_every_key_and_prints_what_mwaa_and_airflow_need(built, aws_endpoint, capsys):
    dist, document = built
    names, s3 = _make_target(aws_endpoint)
    s3.put_object(Bucket=names.assets_bucket, Key="dags/old_dag.py", Body=b"# stale")

    assert _deploy(dist, names, aws_endpoint) == 0

    expected = {a["key"] for a in document["artifacts"]}
    assert _keys(s3, names.assets_bucket) == expected, "stale DAG files must be removed"
    plugins = s3.get_object(Bucket=names.assets_bucket, Key="plugins/plugins.zip")
    assert plugins["Body"].read() == (dist / "plugins.zip").read_bytes()
    printed = capsys.readouterr().out
    assert f"version {plugins['VersionId']}" in printed
    settings = json.loads(printed[printed.rindex("{") :])
    assert settings["glue_script_uri"].startswith(f"s3://{names.assets_bucket}/glue/scripts/")
    # One --extra-py-files value for Glue: the contract package, then the job package, both uploaded.
    py_file_keys = [
        uri.removeprefix(f"s3://{names.assets_bucket}/") for uri in settings["glue_extra_py_files_uri"].split(",")
    ]
    assert [key.rsplit("/", 1)[1] for key in py_file_keys] == ["ndjson_pipeline.zip", "ndjson_job.zip"]
    assert set(py_file_keys) <= _keys(s3, names.assets_bucket)
    assert f'glue_extra_py_files_key             = "{py_file_keys[0]}"' in printed
    assert f'glue_job_py_files_key               = "{py_file_keys[1]}"' in printed
    assert settings["schema_uri"].startswith(f"s3://{names.assets_bucket}/glue/schemas/")
    assert settings["name_prefix"] == names.name_prefix


def test_second_deploy_keeps_object_versions(built, aws_endpoint):
    dist, _ = built
    names, s3 = _make_target(aws_endpoint)
    assert _deploy(dist, names, aws_endpoint) == 0
    first = s3.head_object(Bucket=names.assets_bucket, Key="requirements/requirements.txt")["VersionId"]

    assert _deploy(dist, names, aws_endpoint) == 0

    # An unchanged requirements.txt must not get a new version, or MWAA would need an update.
    assert s3.head_object(Bucket=names.assets_bucket, Key="requirements/requirements.txt")["VersionId"] == first


def test_deploy_without_a_build_fails_clearly(tmp_path, aws_endpoint, capsys):
    names, _ = _make_target(aws_endpoint)
    assert _deploy(tmp_path, names, aws_endpoint) == 1
    assert "build.json" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["glue_script", "glue_python", "glue_job_python"])
def test_settings_point_at_content_hashed_keys(built, kind):
    _, document = built
    settings = deploy.settings_for("bucket", document["artifacts"])
    key = next(a["key"] for a in document["artifacts"] if a["kind"] == kind)
    uris = [uri for value in settings.values() for uri in value.split(",")]
    assert f"s3://bucket/{key}" in uris


def test_settings_point_at_the_schema_of_the_deployments_dataset(built):
    _, document = built
    schema = next(a for a in document["artifacts"] if a["kind"] == "glue_schema")
    orders = {**schema, "key": schema["key"].rsplit("/", 2)[0] + "/0123abcd/orders.json"}
    artifacts = [*document["artifacts"], orders]
    assert deploy.settings_for("bucket", artifacts)["schema_uri"] == f"s3://bucket/{schema['key']}"
    settings = deploy.settings_for("bucket", artifacts, "orders")
    assert (settings["schema_uri"], settings["dataset"]) == (f"s3://bucket/{orders['key']}", "orders")
    with pytest.raises(deploy.DeployError, match="no schema of dataset 'clicks'"):
        deploy.settings_for("bucket", artifacts, "clicks")

"""The bootstrap entry point docker-compose.yaml runs (and `make ui` calls): what it writes, and that IAM holds it.

Run as the compose file runs it, against this session's local AWS; the file it
writes is read back by bash, as the Airflow containers source it.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.exceptions import ClientError

from ndjson_pipeline.metadata_cleanup import LOCAL_AIRFLOW_CONNECTION
from ndjson_pipeline.settings import PipelineSettings
from tools.iam_policies import role_name
from tools.local_airflow import UI_SETTINGS, main
from tools.local_stack import client

DATABASE = "postgresql+psycopg2://airflow:airflow@postgres:5432/airflow"


@pytest.fixture(scope="module")
def written(aws_endpoint, tmp_path_factory) -> tuple[dict[str, str], PipelineSettings]:
    """The environment file, as bash has it after sourcing it, and the names it was bootstrapped for."""
    folder = tmp_path_factory.mktemp("local-stack")
    env_file = folder / "airflow.env"
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    main(
        [
            "--endpoint", aws_endpoint, "--api-url", "http://api-server:8080", "--database-url", DATABASE,
            "--home", str(folder), "--env-file", str(env_file), "--name-prefix", prefix,
        ]
    )  # fmt: skip
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    sourced = subprocess.run(
        ["bash", "-c", f". {env_file} || exit 1; exec python3 -c '{dump}'"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(sourced.stdout), PipelineSettings(name_prefix=prefix)


def _keys(endpoint: str, user: str) -> set[str]:
    metadata = client("iam", endpoint).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {key["AccessKeyId"] for key in metadata}


def test_tasks_call_aws_as_the_mwaa_role_and_spark_submit_as_the_glue_role(aws_endpoint, written):
    env, settings = written
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["extra"]["endpoint_url"] == aws_endpoint
    assert connection["login"] in _keys(aws_endpoint, role_name(settings.names, "mwaa-execution"))
    assert env["AWS_ACCESS_KEY_ID"] in _keys(aws_endpoint, role_name(settings.names, "glue-job"))


def test_the_written_connection_is_held_to_the_mwaa_roles_policy(aws_endpoint, written, monkeypatch):
    env, settings = written
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", env["AIRFLOW_CONN_AWS_DEFAULT"])
    s3 = S3Hook(aws_conn_id="aws_default").get_conn()
    bucket = settings.names.assets_bucket
    # The role may read what MWAA reads from its source bucket (the bootstrap uploaded the schema there) ...
    assert s3.get_object(Bucket=bucket, Key="glue/schemas/events.json")["Body"].read()
    # ... and may not write there: the emulator refuses it, as IAM would.
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="glue/schemas/events.json", Body=b"{}")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_settings_cleanup_connection_and_login_for_airflow(written):
    env, settings = written
    raw = json.loads(env["AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS"])
    assert PipelineSettings.from_mapping(raw).names == settings.names
    assert (raw["glue_runner"], raw["metadata_cleanup_runner"]) == ("local", "local")
    assert {name: raw[name] for name in UI_SETTINGS} == UI_SETTINGS  # as `make ui`
    cleanup = json.loads(env[f"AIRFLOW_CONN_{LOCAL_AIRFLOW_CONNECTION.upper()}"])
    assert (cleanup["host"], cleanup["extra"]["sql_alchemy_conn"]) == ("http://api-server:8080", DATABASE)
    passwords = json.loads(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert passwords == {cleanup["login"]: cleanup["password"]}
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == f"{cleanup['login']}:admin"

"""The embedded local AWS: a moto server on 127.0.0.1 and the pipeline's resources in it.

Resource names and shapes come from ``ndjson_pipeline/resources.json``, the file
the Terraform in ``infra/`` reads too; the identities' policies are the templates
in ``infra/policies/`` (tools/iam_policies.py). Set-up and inspection use the root
key; the pipeline runs as the two identities of ``bootstrap_identities``, which the
server holds to their policies (tools/iam_enforcement.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3

from ndjson_pipeline.catalog import TableDefinition, ensure_table
from ndjson_pipeline.conversion import ConversionOptions
from ndjson_pipeline.dataset_schema import SchemaRegistry
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.resources import ResourceNames, glue_job_spec, landing_prefix, ledger_spec, queue_spec
from tools.child_process import child_server
from tools.iam_enforcement import ROOT_ACCESS_KEY
from tools.iam_policies import LOCAL_ACCOUNT, local_policies, role_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
GLUE_SCRIPT = REPO_ROOT / "glue_scripts" / "ndjson_to_parquet.py"
SCHEMAS = REPO_ROOT / "glue_scripts" / "schemas"
REGION = "us-east-1"
# The local stack's root: set-up, tests' own inspection and tools; the server allows it everything.
FAKE_CREDENTIALS = {"aws_access_key_id": ROOT_ACCESS_KEY, "aws_secret_access_key": "testing"}
POLICY_NAME = "pipeline"  # the inline policy name of both roles (infra/modules/iam)


@dataclass(frozen=True)
class AccessKey:
    """The access key of one local identity (an IAM user standing for a role)."""

    user: str
    arn: str
    access_key_id: str
    secret_access_key: str

    def client_kwargs(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


@dataclass(frozen=True)
class LocalIdentities:
    """The MWAA execution role (DAG tasks, triggerer) and the Glue job role (driver and Spark tasks)."""

    mwaa: AccessKey
    glue: AccessKey

    def airflow_env(self, endpoint_url: str) -> dict[str, str]:
        """Environment of an Airflow process: tasks use the MWAA identity through ``aws_default``.

        The process's default credentials are the Glue identity's: the local Glue runner hands its
        environment to spark-submit, so the job runs as its own role, as on Glue.
        """
        return {**aws_connection_env(endpoint_url, self.mwaa), **self.glue.env()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client(service: str, endpoint_url: str, credentials: AccessKey | None = None):
    """A boto3 client of the local stack, as root unless ``credentials`` name an identity."""
    keys = credentials.client_kwargs() if credentials else FAKE_CREDENTIALS
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION, **keys)


@contextlib.contextmanager
def moto_server(port: int | None = None, log_path: str | None = None) -> Iterator[str]:
    """Run the local AWS (``tools.moto_serve``: moto, and DynamoDB Local behind it) in a child process.

    Yields its endpoint URL; stops it, and with it DynamoDB Local, on exit.
    """
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    pythonpath = os.pathsep.join(
        p for p in (str(REPO_ROOT), str(REPO_ROOT / "include"), os.environ.get("PYTHONPATH")) if p
    )
    command = [sys.executable, "-m", "tools.moto_serve", "--port", str(port), "--dynamodb-port", str(free_port())]
    command += ["--dynamodb-log", f"{log_path}.dynamodb"] if log_path else []
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true", "PYTHONPATH": pythonpath}
    with child_server(f"the local AWS at {endpoint}", command, lambda: _answers(endpoint), log_path=log_path, env=env):
        yield endpoint


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 - loopback only
            return True
    except OSError:
        return False


def bootstrap_resources(endpoint_url: str, names: ResourceNames, table_format: str = "hive") -> None:
    """Create the KMS keys, buckets (SSE-KMS), queue + DLQ + redrive, the S3 -> SQS notification, the ledger table,
    the Glue job and each dataset's catalog table in ``table_format`` (the setting: "hive" or "iceberg").

    Idempotent: resources that already exist are left as they are.
    """
    keys = _create_keys(client("kms", endpoint_url), names)
    s3 = client("s3", endpoint_url)
    for bucket in (names.landing_bucket, names.lake_bucket, names.quarantine_bucket, names.assets_bucket):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
        # As infra/modules/storage: the data key by default, bucket keys on.
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys["data_kms_key_arn"]}
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}]
            },
        )

    sqs = client("sqs", endpoint_url)
    spec = queue_spec()
    dlq_url = sqs.create_queue(
        QueueName=names.dlq,
        Attributes={
            "MessageRetentionPeriod": str(spec["message_retention_seconds"]),
            "KmsMasterKeyId": keys["queue_kms_key_arn"],
        },
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            "VisibilityTimeout": str(spec["visibility_timeout_seconds"]),
            "MessageRetentionPeriod": str(spec["message_retention_seconds"]),
            "ReceiveMessageWaitTimeSeconds": str(spec["receive_wait_time_seconds"]),
            "KmsMasterKeyId": keys["queue_kms_key_arn"],
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec["dlq_max_receive_count"])}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=names.landing_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "landing-object-created",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": landing_prefix()}]}},
                }
            ]
        },
    )
    _create_ledger_table(client("dynamodb", endpoint_url), names.ledger_table)
    _create_glue_job(client("glue", endpoint_url), names)
    for schema in SCHEMAS.glob("*.json"):
        s3.upload_file(str(schema), names.assets_bucket, f"glue/schemas/{schema.name}")
        _create_catalog_table(endpoint_url, names, schema.stem, table_format)
    log.info("bootstrapped local resources for %s at %s", names.name_prefix, endpoint_url)


# Customer-managed keys as in infra/envs/prod (the data key) and infra/modules/queue; policy variable -> alias suffix.
_KEYS = {"data_kms_key_arn": "data", "queue_kms_key_arn": "queue"}


def _create_keys(kms, names: ResourceNames) -> dict[str, str]:
    arns = {}
    for variable, suffix in _KEYS.items():
        alias = f"alias/{names.name_prefix}-{suffix}"
        try:
            arns[variable] = kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
        except kms.exceptions.NotFoundException:
            arns[variable] = kms.create_key(Description=f"{names.name_prefix} {suffix}")["KeyMetadata"]["Arn"]
            kms.create_alias(AliasName=alias, TargetKeyId=arns[variable])
    return arns


def bootstrap_identities(
    endpoint_url: str, names: ResourceNames, dataset: str = "events", policies: dict[str, dict] | None = None
) -> LocalIdentities:
    """Create (or refresh) the two identities with their rendered policies and a new access key each.

    :param policies: role -> policy document, to run under something else than the templates (tests).
    """
    iam = client("iam", endpoint_url)
    if policies is None:
        policies = local_policies(names, dataset, **_create_keys(client("kms", endpoint_url), names))
    keys = {}
    for role, document in policies.items():
        user = role_name(names, role)
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document))
        for old in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
        created = iam.create_access_key(UserName=user)["AccessKey"]
        arn = f"arn:aws:iam::{LOCAL_ACCOUNT}:user/{user}"
        keys[role] = AccessKey(user, arn, created["AccessKeyId"], created["SecretAccessKey"])
    return LocalIdentities(mwaa=keys["mwaa-execution"], glue=keys["glue-job"])


def put_policy(endpoint_url: str, identity: AccessKey, document: dict) -> None:
    """Replace an identity's policy; the server applies it from the next call on."""
    client("iam", endpoint_url).put_user_policy(
        UserName=identity.user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document)
    )


def _create_ledger_table(dynamodb, table: str) -> None:
    spec = ledger_spec()
    index = spec["work_index"]
    keys = [spec["partition_key"], spec["sort_key"], index["partition_key"], index["sort_key"]]
    try:
        dynamodb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[
                {"AttributeName": spec["partition_key"], "KeyType": "HASH"},
                {"AttributeName": spec["sort_key"], "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index["name"],
                    "KeySchema": [
                        {"AttributeName": index["partition_key"], "KeyType": "HASH"},
                        {"AttributeName": index["sort_key"], "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": index["projected_attributes"]},
                }
            ],
        )
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table)
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec["ttl_attribute"]}
    )


def _create_catalog_table(endpoint_url: str, names: ResourceNames, dataset: str, table_format: str) -> None:
    """The dataset's catalog table as infra/modules/catalog declares it: the same definition, default options.

    An Iceberg table's first metadata file is written by Glue's CreateTable on AWS (Terraform's
    ``open_table_format_input``); moto's CreateTable writes none, so here pyiceberg writes it, from the same
    definition.
    """
    layout = LakeLayout(f"s3://{names.lake_bucket}", f"s3://{names.quarantine_bucket}", dataset)
    schema = SchemaRegistry(SCHEMAS, dataset).check()
    if table_format == "iceberg":
        from ndjson_pipeline.iceberg_definition import IcebergTableDefinition, create_table

        definition = IcebergTableDefinition.for_dataset(names.catalog_database, layout, schema, ConversionOptions())
        create_table(iceberg_catalog(endpoint_url, names), definition)
        return
    glue = client("glue", endpoint_url)
    definition = TableDefinition.for_dataset(names.catalog_database, layout, schema, ConversionOptions())
    # A version that says it breaks readers (and why) moves an existing table, as terraform apply does on AWS.
    ensure_table(glue, definition, allow_breaking=schema.breaking is not None)


def iceberg_catalog(endpoint_url: str, names: ResourceNames, credentials: AccessKey | None = None):
    """pyiceberg's GlueCatalog of the local stack, as root unless ``credentials`` name an identity."""
    from pyiceberg.catalog.glue import GlueCatalog

    keys = credentials.client_kwargs() if credentials else FAKE_CREDENTIALS
    file_io = {
        "s3.endpoint": endpoint_url,
        "s3.region": REGION,
        "s3.access-key-id": keys["aws_access_key_id"],
        "s3.secret-access-key": keys["aws_secret_access_key"],
    }
    return GlueCatalog(names.catalog_database, client=client("glue", endpoint_url, credentials), **file_io)


def _create_glue_job(glue, names: ResourceNames) -> None:
    """The job as the Terraform declares it; in AWS its runs execute the script, here they are only recorded."""
    spec = glue_job_spec()
    try:
        glue.create_job(
            Name=names.glue_job,
            Role=f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{role_name(names, 'glue-job')}",
            Command={
                "Name": "glueetl",
                "ScriptLocation": f"s3://{names.assets_bucket}/glue/scripts/ndjson_to_parquet.py",
                "PythonVersion": "3",
            },
            GlueVersion=spec["glue_version"],
            WorkerType=spec["worker_type"],
            NumberOfWorkers=int(spec["number_of_workers"]),
            ExecutionProperty={"MaxConcurrentRuns": int(spec["max_concurrent_runs"])},
        )
    except glue.exceptions.AlreadyExistsException:
        return


def airflow_environment(home: str | Path) -> dict[str, str]:
    """Configuration of a local Airflow (own home, SQLite database) running this repository's DAGs."""
    home = Path(home)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "SPARK_LOCAL_IP": "127.0.0.1",
        # What plugins.zip provides on MWAA: the ndjson_pipeline package importable, the dags folder not.
        "PYTHONPATH": str(REPO_ROOT / "include"),
    }


def aws_connection_env(endpoint_url: str, credentials: AccessKey | None = None) -> dict[str, str]:
    """The ``aws_default`` Airflow connection, pointing at the local moto server (as root unless ``credentials``)."""
    extra = {"endpoint_url": endpoint_url, "region_name": REGION}
    keys = credentials.client_kwargs() if credentials else FAKE_CREDENTIALS
    login, password = keys["aws_access_key_id"], keys["aws_secret_access_key"]
    conn = {"conn_type": "aws", "login": login, "password": password, "extra": extra}
    return {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn)}


def local_pipeline_settings(names: ResourceNames, **overrides) -> dict:
    """Settings that run the real Glue script on local Spark against the moto server's S3."""
    return {
        "name_prefix": names.name_prefix,
        "glue_runner": "local",
        "glue_script_uri": str(GLUE_SCRIPT),
        "intake_wait_seconds": 1,
        "sensor_poll_seconds": 2,
        # The sensor must outlast max_wait_seconds + a poll (settings.py): a local day is ready after 5 s.
        "max_wait_seconds": 5,
        "sensor_timeout_seconds": 30,
        "glue_poll_seconds": 5,
        "reprocess_grace_seconds": 1,  # no reader runs queries against the local lake
        # moto reports constant capacity units (none for transactions): the day report computes them instead.
        "usage_capacity_source": "computed",
        # No MWAA web server here: the metadata cleanup runs the airflow command with the local database.
        "metadata_cleanup_runner": "local",
        **overrides,
    }

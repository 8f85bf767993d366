"""Shared fixtures: one moto server and one Spark session per test process, fresh resources and identities per test.

The server enforces IAM: the fixtures' own clients are root (set-up and
inspection); the pipeline under test runs as ``stack.identities`` (the MWAA
execution role and the Glue job role, with the policies of infra/policies/).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage
from tools.local_stack import (
    LocalIdentities,
    airflow_environment,
    bootstrap_identities,
    bootstrap_resources,
    client,
    moto_server,
)

# Clients built without an explicit endpoint must never reach real AWS from a test.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Every JVM a test starts (the Spark sessions, each local Glue run's spark-submit) lives seconds on small data: the
# client compiler alone and the serial collector start it in about 40% less time, results unchanged.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
# Airflow reads its configuration at first import: give the test session its own home and database.
os.environ.update(airflow_environment(tempfile.mkdtemp(prefix="airflow-home-")))


def pytest_collection_modifyitems(items):
    """The longest tests start first: end-to-end runs, then the other Spark tests, then the rest.

    Workers take tests in this order (pytest-xdist), so the run ends on short tests spread over every worker instead
    of one worker finishing a long end-to-end run while the others wait. The sort is stable: within each kind, the
    order stays the collection's.
    """
    items.sort(key=_start_rank)


def _start_rank(item: pytest.Item) -> int:
    if item.get_closest_marker("e2e"):
        return 0
    return 1 if item.get_closest_marker("spark") else 2


@pytest.fixture(autouse=True)
def _pipeline_loggers_restored():
    """Each side's logging setup (``ndjson_pipeline_airflow.logs``, ``ndjson_job.logs``) sets the pipeline's loggers
    for the whole process, as a task or a Spark worker wants: put them back after each test."""
    loggers = [logging.getLogger(name) for name in ("ndjson_pipeline", "ndjson_pipeline_airflow", "ndjson_job")]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True)
def _fresh_default_boto3_session():
    """boto3's default session keeps the first credentials it resolves for the life of the process. Tests put an
    identity's keys (the Glue role's, the MWAA role's) in the environment; without this, a client built without
    explicit keys in a later test (``tools.deploy``, ``Storage``) would act as whichever identity came first."""
    boto3.DEFAULT_SESSION = None
    yield
    boto3.DEFAULT_SESSION = None


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The worker's one local SparkSession, for every test that reads or converts with Spark in this process.

    Starting a session costs seconds; and a second fixture's ``getOrCreate`` would hand back this same session,
    which that fixture's teardown would then stop under everyone else.
    """
    from tools.local_spark import local_session  # pyspark only where a test asks for Spark

    session = local_session("tests", tmp_path_factory.mktemp("py-files"), driver_memory="2g", shuffle_partitions=2)
    yield session
    session.stop()
    # py4j logs from finalizers at interpreter exit, after pytest closed the streams.
    logging.getLogger("py4j").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory) -> str:
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_server(log_path=str(log_path)) as endpoint:
        yield endpoint


@dataclass
class Stack:
    """One deployment's resources in the local AWS.

    ``s3``/``sqs``/``dynamodb`` act as the account owner (setting the scene: landing files, notifications);
    ``ledger`` and ``storage`` are what the Airflow side's code runs with: the MWAA execution role's identity;
    ``job_storage`` writes what the Glue job writes, as the Glue job role.
    """

    endpoint: str
    settings: PipelineSettings
    s3: Any
    sqs: Any
    dynamodb: Any
    queue_url: str
    dlq_url: str
    ledger: Ledger
    identities: LocalIdentities

    @property
    def names(self):
        return self.settings.names

    # One client each for the stack's life: a boto3 client costs milliseconds to build, and set-ups call these
    # hundreds of times.
    @functools.cached_property
    def storage(self) -> Storage:
        return Storage(s3_client=client("s3", self.endpoint, self.identities.mwaa))

    @functools.cached_property
    def job_storage(self) -> Storage:
        return Storage(s3_client=client("s3", self.endpoint, self.identities.glue))


def make_stack(endpoint: str, **setting_overrides: Any) -> Stack:
    settings = PipelineSettings(name_prefix=f"t-{uuid.uuid4().hex[:10]}", intake_wait_seconds=1, **setting_overrides)
    bootstrap_resources(endpoint, settings.names, settings.table_format)
    identities = bootstrap_identities(endpoint, settings.names, settings.dataset)
    sqs = client("sqs", endpoint)
    mwaa_dynamodb = client("dynamodb", endpoint, identities.mwaa)
    return Stack(
        endpoint=endpoint,
        settings=settings,
        s3=client("s3", endpoint),
        sqs=sqs,
        dynamodb=client("dynamodb", endpoint),
        queue_url=sqs.get_queue_url(QueueName=settings.names.queue)["QueueUrl"],
        dlq_url=sqs.get_queue_url(QueueName=settings.names.dlq)["QueueUrl"],
        ledger=Ledger.for_settings(mwaa_dynamodb, settings),
        identities=identities,
    )


@pytest.fixture
def stack(aws_endpoint) -> Stack:
    return make_stack(aws_endpoint)

"""The soak's local AWS: its own moto server, the pipeline's resources, an alert topic, and the settings.

The server is the soak's alone, so its fault counters and IAM records are the
soak's. Set-up and every check use the root key; the pipeline runs as the MWAA
identity (Airflow tasks, the triggerer) and the Glue identity (the job), which
is what the fault rules select on.

Two things are scaled to the soak's time, not changed in kind: the queue hides a
received message for ``VISIBILITY_SECONDS`` (300 s in resources.json), so
messages a killed intake held come back within the soak; and Airflow retries a
task after ``RETRY_DELAY_SECONDS`` (a cluster policy in the soak's Airflow home;
the DAGs say 30-60 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.storage import Storage
from tools.local_stack import (
    LocalIdentities,
    airflow_environment,
    bootstrap_identities,
    bootstrap_resources,
    client,
    local_pipeline_settings,
    moto_server,
)

VISIBILITY_SECONDS = 10
RETRY_DELAY_SECONDS = 3
# The pipeline at the soak's scale: work is ready at once, manifests are small enough that a day makes several,
# and a claim's lease outlasts the longest conversion (glue_max_wait_seconds is also the local Spark timeout),
# so only a claim whose conversion died is ever found expired.
SOAK_SETTINGS = {
    "min_batch_files": 1,
    "max_wait_seconds": 1,
    "sensor_poll_seconds": 1,
    "sensor_timeout_seconds": 3,
    "intake_wait_seconds": 1,
    "glue_poll_seconds": 2,
    "max_files_per_manifest": 40,
    "max_manifests_per_run": 4,
    "glue_max_wait_seconds": 60,
    "lease_seconds": 75,
    "max_attempts": 4,
}
RETRY_POLICY = f'''"""Soak time scale: retry a failed task after {RETRY_DELAY_SECONDS} s, not the DAGs' 30-60 s."""

from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds={RETRY_DELAY_SECONDS})
'''


@dataclass
class SoakStack:
    endpoint: str
    settings: PipelineSettings
    raw_settings: dict[str, Any]
    identities: LocalIdentities
    queue_url: str
    dlq_url: str
    alerts_queue_url: str
    workdir: Path

    @property
    def names(self):
        return self.settings.names

    def client(self, service: str):
        """A root client: set-up and the soak's own checks."""
        return client(service, self.endpoint)

    def ledger(self) -> Ledger:
        return Ledger(self.client("dynamodb"), self.names.ledger_table)

    def storage(self) -> Storage:
        return Storage(s3_client=self.client("s3"))

    def airflow_env(self, home: Path) -> dict[str, str]:
        """An Airflow process's environment: its own home, the MWAA identity, the settings, the retry policy."""
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "airflow_local_settings.py").write_text(RETRY_POLICY)
        return {
            **os.environ,
            **airflow_environment(home),
            **self.identities.airflow_env(self.endpoint),
            "AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS": json.dumps(self.raw_settings),
        }


@contextlib.contextmanager
def soak_stack(workdir: Path, **setting_overrides: Any) -> Iterator[SoakStack]:
    workdir.mkdir(parents=True, exist_ok=True)
    with moto_server(log_path=str(workdir / "moto.log")) as endpoint:
        names = PipelineSettings(name_prefix=f"soak-{uuid.uuid4().hex[:8]}").names
        bootstrap_resources(endpoint, names)
        identities = bootstrap_identities(endpoint, names)
        sqs = client("sqs", endpoint)
        queue_url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)})
        topic_arn, alerts_queue_url = _alert_topic(endpoint, names.name_prefix)
        raw = local_pipeline_settings(names, **{**SOAK_SETTINGS, "alert_topic_arn": topic_arn, **setting_overrides})
        yield SoakStack(
            endpoint=endpoint,
            settings=PipelineSettings.from_mapping(raw),
            raw_settings=raw,
            identities=identities,
            queue_url=queue_url,
            dlq_url=sqs.get_queue_url(QueueName=names.dlq)["QueueUrl"],
            alerts_queue_url=alerts_queue_url,
            workdir=workdir,
        )


def _alert_topic(endpoint: str, prefix: str) -> tuple[str, str]:
    """The alert topic the MWAA policy may publish to (``<prefix>-alerts``), delivering raw to a queue we read."""
    sns, sqs = client("sns", endpoint), client("sqs", endpoint)
    topic_arn = sns.create_topic(Name=f"{prefix}-alerts")["TopicArn"]
    inbox = sqs.create_queue(QueueName=f"{prefix}-alerts-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    return topic_arn, inbox

"""The one place Airflow-side code gets AWS clients, settings and the ledger from."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk import Variable

from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.settings import SETTINGS_VARIABLE, PipelineSettings, SettingsError
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"
ACTIVE_GLUE_STATES = ("STARTING", "RUNNING", "WAITING", "STOPPING")
# Glue lists a job's runs newest first; a manifest's runs are always among the recent ones.
_GLUE_RUN_PAGES = 5


def load_settings() -> PipelineSettings:
    """Settings from the Airflow Variable (or AIRFLOW_VAR_ env), else NDJSON_PIPELINE_SETTINGS, else defaults."""
    raw = Variable.get(SETTINGS_VARIABLE, default=None)
    if raw is None:
        return PipelineSettings.from_env()
    if isinstance(raw, dict):
        return PipelineSettings.from_mapping(raw)
    try:
        return PipelineSettings.from_json(raw, f"Airflow Variable {SETTINGS_VARIABLE!r}")
    except SettingsError as exc:
        raise SettingsError(f"{exc} (fix the Airflow Variable {SETTINGS_VARIABLE!r})") from exc


def aws_client(service: str, aws_conn_id: str | None = AWS_CONN_ID) -> Any:
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service).get_conn()


def s3_endpoint(aws_conn_id: str | None = AWS_CONN_ID) -> str | None:
    """The S3 endpoint the connection points at (a local emulator), or None for AWS itself."""
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3").conn_config.endpoint_url


def storage_for(aws_conn_id: str | None = AWS_CONN_ID) -> Storage:
    return Storage(s3_client=aws_client("s3", aws_conn_id))


def ledger_for(settings: PipelineSettings, aws_conn_id: str | None = AWS_CONN_ID) -> Ledger:
    return Ledger(
        aws_client("dynamodb", aws_conn_id), settings.names.ledger_table, terminal_ttl_days=settings.terminal_ttl_days
    )


class GlueRuns:
    """Glue runs of the conversion job, found by the manifest id they carry as an argument."""

    def __init__(self, settings: PipelineSettings, aws_conn_id: str | None = AWS_CONN_ID) -> None:
        self.settings = settings
        self.aws_conn_id = aws_conn_id

    @property
    def client(self) -> Any:
        return aws_client("glue", self.aws_conn_id)

    def runs_of(self, manifest_id: str) -> list[dict[str, Any]]:
        if self.settings.glue_runner == "local":
            return []  # local runs are synchronous: none outlives its task
        runs, token = [], None
        for _ in range(_GLUE_RUN_PAGES):
            request: dict[str, Any] = {"JobName": self.settings.names.glue_job, "MaxResults": 200}
            if token:
                request["NextToken"] = token
            page = self.client.get_job_runs(**request)
            runs += [
                r for r in page.get("JobRuns", []) if (r.get("Arguments") or {}).get("--manifest_id") == manifest_id
            ]
            token = page.get("NextToken")
            if not token:
                break
        return runs

    def active_run(self, manifest_id: str) -> str | None:
        for run in self.runs_of(manifest_id):
            if run.get("JobRunState") in ACTIVE_GLUE_STATES:
                return run["Id"]
        return None

    def is_active(self, manifest_id: str) -> bool:
        return self.active_run(manifest_id) is not None

    def stop(self, manifest_id: str, timeout_seconds: int = 600) -> None:
        """Stop every active run of the manifest and wait until none is active, so its output is final."""
        deadline = time.monotonic() + timeout_seconds
        while run_id := self.active_run(manifest_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Glue run {run_id} of manifest {manifest_id} did not stop in {timeout_seconds}s")
            log.warning("stopping Glue run %s of manifest %s", run_id, manifest_id)
            self.client.batch_stop_job_run(JobName=self.settings.names.glue_job, JobRunIds=[run_id])
            time.sleep(10)


def alert_failed_files(
    settings: PipelineSettings, manifest_id: str, identities: list[str], aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """FAILED files need a person: log at ERROR, count them in CloudWatch and publish to the alert topic."""
    log.error(
        "ALERT manifest %s: %d files FAILED after %d attempts: %s",
        manifest_id,
        len(identities),
        settings.max_attempts,
        identities[:10],
    )
    publish_metrics(settings, {"FailedFiles": len(identities)}, aws_conn_id)
    if settings.alert_topic_arn:
        aws_client("sns", aws_conn_id).publish(
            TopicArn=settings.alert_topic_arn,
            Subject=f"ndjson pipeline: {len(identities)} files FAILED"[:100],
            Message=json.dumps({"manifest_id": manifest_id, "failed": identities, "dataset": settings.dataset}),
        )


def publish_metrics(settings: PipelineSettings, values: dict[str, float], aws_conn_id: str | None = AWS_CONN_ID):
    aws_client("cloudwatch", aws_conn_id).put_metric_data(
        Namespace=settings.metrics_namespace,
        MetricData=[
            {"MetricName": name, "Value": float(value), "Dimensions": [{"Name": "Dataset", "Value": settings.dataset}]}
            for name, value in values.items()
        ],
    )

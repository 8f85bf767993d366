"""What the pipeline tells people: its CloudWatch metrics and the alert for FAILED files."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from airflow.providers.amazon.aws.hooks.sns import SnsHook

from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow.hooks import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.cloudwatch import CloudWatchMetricsHook

log = logging.getLogger(__name__)


def publish_metrics(
    settings: PipelineSettings, values: Mapping[str, float], aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """The pipeline's metrics, in its namespace with the ``Dataset`` dimension the alarms select on."""
    CloudWatchMetricsHook(aws_conn_id=aws_conn_id).put_metrics(
        settings.metrics_namespace, values, {"Dataset": settings.dataset}
    )


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
        SnsHook(aws_conn_id=aws_conn_id).publish_to_target(
            target_arn=settings.alert_topic_arn,
            subject=f"ndjson pipeline: {len(identities)} files FAILED"[:100],
            message=json.dumps({"manifest_id": manifest_id, "failed": identities, "dataset": settings.dataset}),
        )

"""What the pipeline tells people: its CloudWatch metrics and its alerts.

An alert is logged at ERROR, counted in CloudWatch and, when ``alert_topic_arn``
is set, published to SNS. Each carries an ``alert_id`` derived from what it is
about (kind, manifest, files), in its body and as a message attribute: an alert
published again after a crash (the ledger's marker was not cleared yet) has the
same id, so a consumer that drops repeated ids sees it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook

from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline_airflow import AWS_CONN_ID
from ndjson_pipeline_airflow.hooks.cloudwatch import CloudWatchMetricsHook

log = logging.getLogger(__name__)


def publish_metrics(
    settings: PipelineSettings, values: Mapping[str, float], aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """The pipeline's metrics, in its namespace with the ``Dataset`` dimension the alarms select on."""
    CloudWatchMetricsHook(aws_conn_id=aws_conn_id).put_metrics(
        settings.metrics_namespace, values, {"Dataset": settings.dataset}
    )


def alert_id(kind: str, subject: str, identities: Sequence[str] = ()) -> str:
    """The same id for the same alert (of a manifest or a day), however often it is published."""
    return hashlib.sha256("\n".join([kind, subject, *sorted(identities)]).encode()).hexdigest()[:32]


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
        extra={"alert": "failed_files", "manifest_id": manifest_id, "files_failed": len(identities)},
    )
    publish_metrics(settings, {"FailedFiles": len(identities)}, aws_conn_id)
    _publish(
        settings,
        f"ndjson pipeline: {len(identities)} files FAILED",
        {"kind": "failed_files", "manifest_id": manifest_id, "failed": identities},
        alert_id("failed_files", manifest_id, identities),
        aws_conn_id,
    )


def alert_unrepaired_manifest(
    settings: PipelineSettings, manifest_id: str, reason: str, aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """A manifest whose compensation could not complete: its files stay claimed until a sweep repairs it."""
    log.error(
        "ALERT manifest %s could not be repaired; the next sweep retries: %s",
        manifest_id,
        reason,
        extra={"alert": "unrepaired_manifest", "manifest_id": manifest_id},
    )
    publish_metrics(settings, {"UnrepairedManifests": 1}, aws_conn_id)
    _publish(
        settings,
        "ndjson pipeline: a manifest could not be repaired",
        {"kind": "unrepaired_manifest", "manifest_id": manifest_id, "reason": reason},
        alert_id("unrepaired_manifest", manifest_id, [reason]),
        aws_conn_id,
    )


def alert_conversion_failed(
    settings: PipelineSettings,
    manifest_id: str,
    identities: list[str],
    reason: str,
    aws_conn_id: str | None = AWS_CONN_ID,
) -> None:
    """A conversion that failed for good (its task's last try); its files go back to PENDING or FAILED next."""
    log.error(
        "ALERT conversion of manifest %s failed for good (%s); files: %s",
        manifest_id,
        reason,
        identities[:10],
        extra={"alert": "conversion_failed", "manifest_id": manifest_id, "files": len(identities)},
    )
    publish_metrics(settings, {"FailedConversions": 1}, aws_conn_id)
    _publish(
        settings,
        "ndjson pipeline: a conversion failed",
        {"kind": "conversion_failed", "manifest_id": manifest_id, "files": identities, "reason": reason},
        alert_id("conversion_failed", manifest_id),
        aws_conn_id,
    )


def alert_present_but_superseded(
    settings: PipelineSettings, day: str, identities: list[str], aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """Versions quarantined as superseded that S3 still holds: their rows are missing until an operator replays them."""
    log.error(
        "ALERT day %s: %d versions QUARANTINED as superseded are still in S3 with their eTag; replay them "
        "(ndjson_maintenance, replay_quarantined): %s",
        day,
        len(identities),
        identities[:10],
        extra={"alert": "present_but_superseded", "day": day, "files": len(identities)},
    )
    publish_metrics(settings, {"PresentButSupersededFiles": len(identities)}, aws_conn_id)
    _publish(
        settings,
        f"ndjson pipeline: {len(identities)} files wrongly quarantined as superseded",
        {"kind": "present_but_superseded", "day": day, "files": identities},
        alert_id("present_but_superseded", day, identities),
        aws_conn_id,
    )


def report_rescued_rows(
    settings: PipelineSettings, day: str, drift: Mapping[str, Any], aws_conn_id: str | None = AWS_CONN_ID
) -> None:
    """The day's rescued share as a metric; over ``rescued_rows_alert_percent``, an alert naming the new fields.

    ``drift`` is the day report's ``drift`` section. A day without rows publishes nothing.
    """
    percent = drift["rows_rescued_percent"]
    if percent is None:
        return
    publish_metrics(settings, {"RescuedRowsPercent": percent, "RescuedRowsAlerts": int(drift["alert"])}, aws_conn_id)
    if not drift["alert"]:
        return
    new_fields = [f["path"] for f in drift["new_fields"]]
    log.error(  # the fields by count: their names are the records' keys (the report and the alert name them)
        "ALERT day %s: %.3f%% of the rows kept values in _rescued_data (over rescued_rows_alert_percent %s); "
        "%d fields the schema does not declare, %d with values of another type. The day report %s names them "
        "and proposes the next schema version",
        day,
        percent,
        settings.rescued_rows_alert_percent,
        len(new_fields),
        len(drift["mismatched"]),
        settings.layout.report_uri(day),
        extra={"alert": "rescued_rows", "day": day, "rows_rescued_percent": percent},
    )
    next_schema = drift["next_schema"]
    _publish(
        settings,
        f"ndjson pipeline: {percent:.1f}% of the rows of {day} rescued",
        {
            "kind": "rescued_rows",
            "day": day,
            "rows_rescued_percent": percent,
            "new_fields": new_fields,
            "mismatched": [f["path"] for f in drift["mismatched"]],
            "next_schema_version": None if next_schema is None else next_schema["version"],
            "report_uri": settings.layout.report_uri(day),
        },
        alert_id("rescued_rows", day),
        aws_conn_id,
    )


def _publish(
    settings: PipelineSettings, subject: str, body: dict[str, Any], identifier: str, aws_conn_id: str | None
) -> None:
    if not settings.alert_topic_arn:
        return
    SnsHook(aws_conn_id=aws_conn_id).publish_to_target(
        target_arn=settings.alert_topic_arn,
        subject=subject[:100],
        message=json.dumps({**body, "dataset": settings.dataset, "alert_id": identifier}),
        message_attributes={"alert_id": identifier, "kind": str(body["kind"])},
    )

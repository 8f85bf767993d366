"""Metrics and the FAILED-files alert over the moto server: CloudWatch data points and an SNS message."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline_airflow.monitoring import alert_failed_files, alert_id, report_rescued_rows
from tools.local_stack import aws_connection_env, client


@pytest.fixture
def airflow_aws(stack, monkeypatch):
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():
        monkeypatch.setenv(name, value)
    return stack


def _subscribed_queue(stack, topic_arn: str) -> str:
    sqs = client("sqs", stack.endpoint)
    url = sqs.create_queue(QueueName=f"{stack.settings.name_prefix}-alerts-probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("sns", stack.endpoint).subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def _failed_files_published(stack, settings) -> float:
    stats = client("cloudwatch", stack.endpoint).get_metric_statistics(
        Namespace=settings.metrics_namespace,
        MetricName="FailedFiles",
        Dimensions=[{"Name": "Dataset", "Value": settings.dataset}],
        StartTime=utcnow() - timedelta(hours=1),
        EndTime=utcnow() + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    return sum(point["Sum"] for point in stats["Datapoints"])


def test_failed_files_are_counted_and_published_to_the_alert_topic(airflow_aws):
    stack = airflow_aws
    topic_arn = client("sns", stack.endpoint).create_topic(Name=f"{stack.settings.name_prefix}-alerts")["TopicArn"]
    queue_url = _subscribed_queue(stack, topic_arn)
    settings = stack.settings.replace(alert_topic_arn=topic_arn)

    # The moto server is shared by the whole session and other tests publish FailedFiles
    # for the same namespace and dataset, so the assertion is on what this call adds.
    before = _failed_files_published(stack, settings)
    alert_failed_files(settings, "20261124-aaaa", ["b/k1#e1", "b/k2#e2"])

    assert _failed_files_published(stack, settings) - before == 2
    (message,) = client("sqs", stack.endpoint).receive_message(
        QueueUrl=queue_url, WaitTimeSeconds=2, MessageAttributeNames=["All"]
    )["Messages"]
    identifier = alert_id("failed_files", "20261124-aaaa", ["b/k2#e2", "b/k1#e1"])
    assert json.loads(message["Body"]) == {
        "kind": "failed_files",
        "manifest_id": "20261124-aaaa",
        "failed": ["b/k1#e1", "b/k2#e2"],
        "dataset": settings.dataset,
        "alert_id": identifier,
    }
    assert message["MessageAttributes"]["alert_id"]["StringValue"] == identifier


def test_an_alert_published_again_carries_the_same_id():
    assert alert_id("failed_files", "m1", ["a", "b"]) == alert_id("failed_files", "m1", ["b", "a"])
    assert alert_id("failed_files", "m1", ["a"]) != alert_id("failed_files", "m1", ["a", "b"])
    assert alert_id("failed_files", "m1") != alert_id("conversion_failed", "m1")


def _published(stack, settings, metric: str, statistic: str = "Sum") -> list[float]:
    stats = client("cloudwatch", stack.endpoint).get_metric_statistics(
        Namespace=settings.metrics_namespace,
        MetricName=metric,
        Dimensions=[{"Name": "Dataset", "Value": settings.dataset}],
        StartTime=utcnow() - timedelta(hours=1),
        EndTime=utcnow() + timedelta(minutes=5),
        Period=60,
        Statistics=[statistic],
    )
    return [point[statistic] for point in stats["Datapoints"]]


def _drift_section(percent: float | None, alert: bool) -> dict:
    return {
        "rows_rescued_percent": percent,
        "alert": alert,
        "new_fields": [{"path": "user.plan", "rows": 9, "type": "string"}],
        "mismatched": [{"path": "value", "rows": 1, "type": "string", "declared": "double"}],
        "next_schema": {"type": "struct", "version": 2, "fields": []},
    }


def test_a_rescued_share_over_the_setting_is_published_and_alerted(airflow_aws, caplog):
    stack = airflow_aws
    topic_arn = client("sns", stack.endpoint).create_topic(Name=f"{stack.settings.name_prefix}-alerts")["TopicArn"]
    queue_url = _subscribed_queue(stack, topic_arn)
    # A dataset of this test's own: the server is shared, and other tests publish for the default one.
    settings = stack.settings.replace(alert_topic_arn=topic_arn, dataset="drift_alerted")

    report_rescued_rows(settings, "2026-11-24", _drift_section(12.5, alert=True))

    assert _published(stack, settings, "RescuedRowsPercent", "Maximum") == [12.5]
    assert _published(stack, settings, "RescuedRowsAlerts") == [1]
    (message,) = client("sqs", stack.endpoint).receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    body = json.loads(message["Body"])
    assert (body["kind"], body["day"], body["rows_rescued_percent"]) == ("rescued_rows", "2026-11-24", 12.5)
    assert (body["new_fields"], body["mismatched"], body["next_schema_version"]) == (["user.plan"], ["value"], 2)
    assert body["alert_id"] == alert_id("rescued_rows", "2026-11-24")
    assert "ALERT day 2026-11-24: 12.500% of the rows kept values in _rescued_data" in caplog.text
    # The alert names the fields; the log counts them (field names are the records' own keys).
    assert "1 fields the schema does not declare, 1 with values of another type" in caplog.text
    assert "user.plan" not in caplog.text


def test_a_rescued_share_under_the_setting_is_published_without_an_alert(airflow_aws):
    stack = airflow_aws
    topic_arn = client("sns", stack.endpoint).create_topic(Name=f"{stack.settings.name_prefix}-alerts")["TopicArn"]
    queue_url = _subscribed_queue(stack, topic_arn)
    settings = stack.settings.replace(alert_topic_arn=topic_arn, dataset="drift_quiet")

    report_rescued_rows(settings, "2026-11-24", _drift_section(0.5, alert=False))
    report_rescued_rows(settings, "2026-11-25", _drift_section(None, alert=False))  # a day without rows

    assert _published(stack, settings, "RescuedRowsPercent", "Maximum") == [0.5]
    assert _published(stack, settings, "RescuedRowsAlerts") == [0]
    assert "Messages" not in client("sqs", stack.endpoint).receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)

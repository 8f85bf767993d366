"""Metrics and the FAILED-files alert over the moto server: CloudWatch data points and an SNS message."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ndjson_pipeline.clock import utcnow
from ndjson_pipeline_airflow.monitoring import alert_failed_files, alert_id
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

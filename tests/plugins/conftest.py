"""Fixtures of the plugin tests: conversions on moto's Glue, runs that can be stopped, the alert topic."""

from __future__ import annotations

import json
import os
from typing import Any

import botocore.client
import pytest
import requests

from tools.local_stack import aws_connection_env, client


@pytest.fixture
def glue_stops(monkeypatch) -> set[str]:
    """moto answers BatchStopJobRun with a 500: here a stop is recorded and the run reads STOPPED afterwards.

    Yields the ids of the runs stopped so far.
    """
    stopped: set[str] = set()
    real_call = botocore.client.BaseClient._make_api_call

    def call(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "BatchStopJobRun":
            stopped.update(params["JobRunIds"])
            runs = [{"JobName": params["JobName"], "JobRunId": run_id} for run_id in params["JobRunIds"]]
            return {"SuccessfulSubmissions": runs, "Errors": []}
        response = real_call(client, operation, params)
        for run in response.get("JobRuns", []) if operation == "GetJobRuns" else []:
            if run["Id"] in stopped:
                run["JobRunState"] = "STOPPED"
        return response

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return stopped


@pytest.fixture
def glue_conversions(stack, monkeypatch):
    """Conversions on (moto's) Glue as the MWAA role, whose runs stay RUNNING until the test ends."""
    for name, value in aws_connection_env(stack.endpoint, stack.identities.mwaa).items():
        monkeypatch.setenv(name, value)
    settings = {"name_prefix": stack.settings.name_prefix, "glue_poll_seconds": 5, "glue_max_wait_seconds": 600}
    monkeypatch.setenv("AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS", json.dumps(settings))
    state_manager = f"{stack.endpoint}/moto-api/state-manager"
    transition = {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 1000}}
    requests.post(f"{state_manager}/set-transition", json=transition, timeout=10).raise_for_status()
    yield stack
    requests.post(f"{state_manager}/unset-transition", json={"model_name": "glue::job_run"}, timeout=10)


@pytest.fixture
def alert_inbox(stack, monkeypatch):
    """The alert topic the settings name, and a function returning the alerts published to it since the last call."""
    sns, sqs = client("sns", stack.endpoint), client("sqs", stack.endpoint)
    topic_arn = sns.create_topic(Name=f"{stack.settings.name_prefix}-alerts")["TopicArn"]
    url = sqs.create_queue(QueueName=f"{stack.settings.name_prefix}-alert-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    raw = os.environ.get("AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS", "{}")
    monkeypatch.setenv(
        "AIRFLOW_VAR_NDJSON_PIPELINE_SETTINGS", json.dumps({**json.loads(raw), "alert_topic_arn": topic_arn})
    )

    def received() -> list[dict[str, Any]]:
        alerts = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
            alerts += [json.loads(m["Body"]) for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return alerts

    return received

"""Each injected fault reaches a boto3 client as AWS would send it, and botocore retries what it retries on AWS."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tools import faults
from tools.faults import FaultEndpointError, FaultRule
from tools.local_stack import FAKE_CREDENTIALS, REGION, client

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
KEY = {"pk": {"S": "file#a"}, "sk": {"S": "v#1"}}


@pytest.fixture
def faulty(stack):
    faults.clear(stack.endpoint)
    yield stack
    faults.clear(stack.endpoint)


def _once(stack, service: str):
    return boto3.client(service, endpoint_url=stack.endpoint, region_name=REGION, config=NO_RETRIES, **FAKE_CREDENTIALS)


def _code(call) -> tuple[int, str, dict]:
    with pytest.raises(ClientError) as failure:
        call()
    response = failure.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response


def _calls(stack) -> dict:
    """One cheap call per service, against the stack's own resources, with retries off."""
    s3, ddb, sqs = _once(stack, "s3"), _once(stack, "dynamodb"), _once(stack, "sqs")
    glue, sns, cloudwatch = _once(stack, "glue"), _once(stack, "sns"), _once(stack, "cloudwatch")
    return {
        "s3": lambda: s3.head_bucket(Bucket=stack.names.lake_bucket),
        "dynamodb": lambda: ddb.get_item(TableName=stack.names.ledger_table, Key=KEY),
        "sqs": lambda: sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"]),
        "glue": lambda: glue.get_job(JobName=stack.names.glue_job),
        "sns": lambda: sns.list_topics(),
        "cloudwatch": lambda: cloudwatch.put_metric_data(Namespace="N", MetricData=[{"MetricName": "m", "Value": 1}]),
    }


@pytest.mark.parametrize(
    ("service", "status", "code"),
    [
        ("s3", 503, "503"),  # HeadBucket has no body: botocore keeps the status; GetObject below shows SlowDown
        ("dynamodb", 400, "ProvisionedThroughputExceededException"),
        ("sqs", 403, "RequestThrottled"),
        ("glue", 400, "ThrottlingException"),
        ("sns", 400, "Throttling"),
        ("cloudwatch", 400, "Throttling"),
    ],
)
def test_a_throttle_reaches_the_client_with_the_services_code(faulty, service, status, code):
    faults.inject(faulty.endpoint, FaultRule("throttle", service=service))
    assert _code(_calls(faulty)[service])[:2] == (status, code)
    assert faults.counts(faulty.endpoint) == {"throttle": 1}


def test_s3_slow_down_and_server_errors_carry_their_codes(faulty):
    s3 = _once(faulty, "s3")
    faulty.s3.put_object(Bucket=faulty.names.lake_bucket, Key="k", Body=b"x")
    for kind, expected in (("throttle", (503, "SlowDown")), ("internal_error", (500, "InternalError"))):
        with faults.injected(faulty.endpoint, FaultRule(kind, service="s3", operation="GetObject")):
            assert _code(lambda: s3.get_object(Bucket=faulty.names.lake_bucket, Key="k"))[:2] == expected
    with faults.injected(faulty.endpoint, FaultRule("unavailable", service="dynamodb")):
        ddb = _once(faulty, "dynamodb")
        assert _code(lambda: ddb.get_item(TableName=faulty.names.ledger_table, Key=KEY))[:2] == (
            503,
            "ServiceUnavailable",
        )


def test_botocore_retries_a_throttle_then_succeeds(faulty):
    faults.inject(faulty.endpoint, FaultRule("throttle", service="dynamodb", operation="GetItem", max_count=2), seed=1)
    response = faulty.dynamodb.get_item(TableName=faulty.names.ledger_table, Key=KEY)  # default retry policy
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    faults.clear(faulty.endpoint)
    faults.inject(faulty.endpoint, FaultRule("throttle", service="s3", operation="PutObject", max_count=1))
    response = faulty.s3.put_object(Bucket=faulty.names.lake_bucket, Key="k", Body=b"x")
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert faults.counts(faulty.endpoint) == {"throttle": 1}


def test_a_transaction_conflict_cancels_with_its_reason(faulty):
    table = faulty.names.ledger_table
    items = [
        {"Put": {"TableName": table, "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
    ]
    faults.inject(faulty.endpoint, FaultRule("transaction_conflict", operation="TransactWriteItems", max_count=1))
    status, code, response = _code(lambda: faulty.dynamodb.transact_write_items(TransactItems=items))
    assert (status, code) == (400, "TransactionCanceledException")
    assert [r["Code"] for r in response["CancellationReasons"]] == ["TransactionConflict", "None"]
    faulty.dynamodb.transact_write_items(TransactItems=items)  # max_count spent: the retry commits
    assert faulty.dynamodb.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})["Item"]


def test_access_denied_on_one_object_only(faulty):
    lake = faulty.names.lake_bucket
    for key in ("events/dt=2026-11-24/bad.parquet", "events/dt=2026-11-24/good.parquet"):
        faulty.s3.put_object(Bucket=lake, Key=key, Body=b"x")
    faults.inject(faulty.endpoint, FaultRule("access_denied", service="s3", resource="*/bad.parquet"))
    assert _code(lambda: faulty.s3.get_object(Bucket=lake, Key="events/dt=2026-11-24/bad.parquet"))[:2] == (
        403,
        "AccessDenied",
    )
    assert faulty.s3.get_object(Bucket=lake, Key="events/dt=2026-11-24/good.parquet")["Body"].read() == b"x"


def test_a_reset_drops_the_connection_and_a_retry_gets_through(faulty):
    faults.inject(faulty.endpoint, FaultRule("reset", service="sqs", max_count=1))
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        _calls(faulty)["sqs"]()
    faults.inject(faulty.endpoint, FaultRule("reset", service="sqs", max_count=1))
    attributes = faulty.sqs.get_queue_attributes(QueueUrl=faulty.queue_url, AttributeNames=["All"])
    assert attributes["ResponseMetadata"]["RetryAttempts"] == 1
    assert faults.counts(faulty.endpoint) == {"reset": 2}


def test_latency_delays_the_matching_calls(faulty):
    faults.inject(faulty.endpoint, FaultRule("latency", service="glue", latency_ms=1500))
    started = time.monotonic()
    _calls(faulty)["glue"]()
    assert time.monotonic() - started >= 1.5
    _calls(faulty)["dynamodb"]()  # not matched: the rule does not fire (timing alone would flake on a busy machine)
    assert faults.state(faulty.endpoint)["rules"][0]["fired"] == 1
    assert faults.counts(faulty.endpoint) == {"latency": 1}


def test_rates_are_reproducible_with_a_seed(faulty):
    def pattern() -> list[bool]:
        faults.clear(faulty.endpoint)
        faults.inject(faulty.endpoint, FaultRule("internal_error", service="dynamodb", rate=0.5), seed=42)
        outcomes = []
        for _ in range(16):
            try:
                _calls(faulty)["dynamodb"]()
                outcomes.append(False)
            except ClientError:
                outcomes.append(True)
        return outcomes

    first = pattern()
    assert first == pattern()
    assert 0 < sum(first) < 16


def test_rules_match_by_identity(faulty):
    faults.inject(faulty.endpoint, FaultRule("throttle", service="s3", identity="*-glue-job"))
    glue_s3 = client("s3", faulty.endpoint, faulty.identities.glue)
    faulty.s3.put_object(Bucket=faulty.names.lake_bucket, Key="events/k", Body=b"x")  # root: untouched
    with pytest.raises(ClientError, match="SlowDown"):
        glue_s3.get_object(Bucket=faulty.names.lake_bucket, Key="events/k")
    assert faults.state(faulty.endpoint)["rules"][0]["fired"] >= 1


def test_a_bad_rule_is_refused_naming_its_field(faulty):
    with pytest.raises(FaultEndpointError, match="kind 'slow'"):
        faults.inject(faulty.endpoint, FaultRule("slow"))
    with pytest.raises(FaultEndpointError, match="latency_ms"):
        faults.inject(faulty.endpoint, FaultRule("latency"))
    assert faults.state(faulty.endpoint)["rules"] == []

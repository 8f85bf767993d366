"""The Terraform and the local bootstrap declare the same resources, both from resources.json.

The Terraform is read with python-hcl2 and its references are followed back to
resources.json; the bootstrap runs on the moto server and the created resources
are described. Any drift in names, keys, index, TTL or redrive fails here.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from ndjson_pipeline.resources import ResourceNames
from tests.infra import hcl
from tools.local_stack import bootstrap_resources, client


def _make_terraform_view(name_prefix: str) -> dict:
    context = hcl.env_context(name_prefix)
    view = {}
    for module in ("storage", "queue", "ledger", "glue"):
        inputs = hcl.module_inputs(module, context)
        doc = hcl.module_doc(hcl.module_folder(module))
        view[module] = (inputs, doc, {"var": inputs})
    return view


@pytest.fixture(scope="module")
def deployed(aws_endpoint):
    name_prefix = f"tf-{uuid.uuid4().hex[:10]}"
    bootstrap_resources(aws_endpoint, ResourceNames(name_prefix))
    return name_prefix, _make_terraform_view(name_prefix), aws_endpoint


def test_env_root_reads_resources_json():
    assert hcl.resources_spec_path() == (hcl.ROOT / "include" / "ndjson_pipeline" / "resources.json")


def test_buckets_match(deployed):
    name_prefix, view, endpoint = deployed
    inputs, doc, _ = view["storage"]
    bucket = hcl.blocks(doc, "resource", "aws_s3_bucket")["this"]
    assert (bucket["for_each"], bucket["bucket"]) == ("${var.bucket_names}", "${each.value}")
    names = ResourceNames(name_prefix)
    assert inputs["bucket_names"] == {
        "landing": names.landing_bucket,
        "lake": names.lake_bucket,
        "quarantine": names.quarantine_bucket,
        "assets": names.assets_bucket,
    }
    existing = {b["Name"] for b in client("s3", endpoint).list_buckets()["Buckets"]}
    assert set(inputs["bucket_names"].values()) <= existing


def test_queues_and_redrive_match(deployed):
    _, view, endpoint = deployed
    _, doc, context = view["queue"]
    queues = hcl.blocks(doc, "resource", "aws_sqs_queue")
    sqs = client("sqs", endpoint)

    events = hcl.resolve(queues["events"], context)
    url = sqs.get_queue_url(QueueName=events["name"])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == str(events["visibility_timeout_seconds"])
    assert attributes["MessageRetentionPeriod"] == str(events["message_retention_seconds"])
    assert attributes["ReceiveMessageWaitTimeSeconds"] == str(events["receive_wait_time_seconds"])

    dlq_name = hcl.resolve(queues["dlq"]["name"], context)
    redrive_expr = queues["events"]["redrive_policy"]
    assert "deadLetterTargetArn = aws_sqs_queue.dlq.arn" in redrive_expr
    max_receive_ref = re.search(r"maxReceiveCount = ([\w.]+)", redrive_expr).group(1)
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == hcl.resolve("${" + max_receive_ref + "}", context)
    assert redrive["deadLetterTargetArn"].endswith(f":{dlq_name}")


def test_landing_notification_matches(deployed):
    _, view, endpoint = deployed
    inputs, doc, context = view["queue"]
    declared = hcl.resolve(hcl.blocks(doc, "resource", "aws_s3_bucket_notification")["landing"]["queue"][0], context)
    landing = view["storage"][0]["bucket_names"]["landing"]
    (created,) = client("s3", endpoint).get_bucket_notification_configuration(Bucket=landing)["QueueConfigurations"]
    assert created["Events"] == declared["events"]
    assert created["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": declared["filter_prefix"]}]
    assert created["QueueArn"].endswith(f":{inputs['queue_name']}")


def test_ledger_table_matches(deployed):
    _, view, endpoint = deployed
    _, doc, context = view["ledger"]
    table = hcl.resolve(hcl.blocks(doc, "resource", "aws_dynamodb_table")["ledger"], context)
    dynamodb = client("dynamodb", endpoint)
    created = dynamodb.describe_table(TableName=table["name"])["Table"]

    assert {k["KeyType"]: k["AttributeName"] for k in created["KeySchema"]} == {
        "HASH": table["hash_key"],
        "RANGE": table["range_key"],
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in created["AttributeDefinitions"]} == {
        (a["name"], a["type"]) for a in table["attribute"]
    }
    (declared_index,) = table["global_secondary_index"]
    (created_index,) = created["GlobalSecondaryIndexes"]
    assert created_index["IndexName"] == declared_index["name"]
    assert {k["KeyType"]: k["AttributeName"] for k in created_index["KeySchema"]} == {
        "HASH": declared_index["hash_key"],
        "RANGE": declared_index["range_key"],
    }
    assert created_index["Projection"]["ProjectionType"] == declared_index["projection_type"]
    ttl = dynamodb.describe_time_to_live(TableName=table["name"])["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == table["ttl"][0]["attribute_name"]


def test_glue_job_shape_comes_from_resources_json(deployed):
    _, view, endpoint = deployed
    _, doc, context = view["glue"]
    job = hcl.blocks(doc, "resource", "aws_glue_job")["this"]
    # The DAG caps its mapped Glue tasks with the same resources.json value.
    assert job["execution_property"][0]["max_concurrent_runs"] == "${var.spec.max_concurrent_runs}"
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["glue"]
    assert call["spec"] == "${local.spec.glue_job}"

    declared = hcl.resolve(job, context)
    created = client("glue", endpoint).get_job(JobName=declared["name"])["Job"]
    assert created["ExecutionProperty"]["MaxConcurrentRuns"] == declared["execution_property"][0]["max_concurrent_runs"]
    assert created["GlueVersion"] == declared["glue_version"]
    assert created["WorkerType"] == declared["worker_type"]
    assert created["NumberOfWorkers"] == declared["number_of_workers"]
    assert declared["execution_class"] == "STANDARD"
    assert declared["job_run_queuing_enabled"] is True

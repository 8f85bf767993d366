"""The ingest DAG under the failures the pipeline must survive: old days, a stuck sweep, lost alerts, failed deletes.

Every scenario ends with the invariant: every file version of the day is DONE,
QUARANTINED or FAILED with an alert; the Parquet holds each valid row once.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ndjson_pipeline import local_glue
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.files import FileState
from ndjson_pipeline.layout import PublishLog
from ndjson_pipeline.ledger import Ledger
from ndjson_pipeline.steps.intake import drain_queue
from ndjson_pipeline.steps.planning import plan_manifests
from ndjson_pipeline.steps.reporting import day_report
from tests.conftest import make_stack
from tests.e2e.conftest import configure, ingest, land, parquet_event_ids, run, task_states
from tests.e2e.expectations import assert_day_converted_exactly
from tests.factories import SHORT_LEASE, wait_for_expired_claims
from tools import faults
from tools.faults import FaultRule
from tools.local_stack import client

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def _days_ago(days: int) -> str:
    return (utcnow() - timedelta(days=days)).date().isoformat()


def _alert_probe(stack) -> tuple[str, str]:
    """The alert topic the settings name, with a queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = client("sns", stack.endpoint), client("sqs", stack.endpoint)
    topic_arn = sns.create_topic(Name=f"{stack.settings.name_prefix}-alerts")["TopicArn"]
    url = sqs.create_queue(QueueName=f"{stack.settings.name_prefix}-alert-probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic_arn, url


def _alerts(stack, queue_url: str) -> list[dict]:
    sqs, messages = client("sqs", stack.endpoint), []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        messages += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


def test_an_old_days_pending_files_and_expired_claims_are_converted(dags, aws_endpoint, monkeypatch):
    """Work of a day older than yesterday, registered by an earlier run, is watched and swept until done."""
    stack = make_stack(aws_endpoint, **SHORT_LEASE)
    configure(stack, monkeypatch)
    old_day = _days_ago(5)
    sample = land(stack, files=4, day=old_day)
    # An earlier run's intake, in groups of two, and a batching task of that run claimed some, then died: its
    # claims expire.
    two_files = stack.settings.replace(max_files_per_manifest=2)
    two_file_groups = Ledger.for_settings(client("dynamodb", stack.endpoint, stack.identities.mwaa), two_files)
    drain_queue(stack.sqs, stack.queue_url, two_file_groups, two_files)
    orphans = plan_manifests(stack.ledger, stack.storage, two_files, [old_day], owner="old/run")
    assert orphans
    wait_for_expired_claims(stack, orphans)

    ingested = ingest(dags)

    assert str(ingested.state) == "success", task_states(ingested)
    for ref in orphans:
        assert stack.ledger.get_manifest(ref.manifest_id).state == "COMPENSATED"
    assert_day_converted_exactly(stack, sample)


def test_a_sweep_that_cannot_repair_a_manifest_does_not_stop_the_conversions(dags, aws_endpoint, monkeypatch):
    stack = make_stack(aws_endpoint, **SHORT_LEASE)
    topic_arn, probe = _alert_probe(stack)
    configure(stack, monkeypatch, alert_topic_arn=topic_arn)
    sample = land(stack, files=4)
    # Registered a file a group, so a manifest of one file leaves the other three to the ingest run.
    one_file = stack.settings.replace(max_files_per_manifest=1)
    one_file_groups = Ledger.for_settings(client("dynamodb", stack.endpoint, stack.identities.mwaa), one_file)
    drain_queue(stack.sqs, stack.queue_url, one_file_groups, one_file)
    (stuck,) = plan_manifests(
        stack.ledger,
        stack.storage,
        one_file,
        [sample.day],
        owner="old/run",
        max_manifests=1,
    )
    # Its run died mid-publish, and S3 refuses to delete what it published.
    partial = stack.settings.layout.part_uri(sample.day, stuck.manifest_id, 0, "snappy")
    PublishLog(frozenset([partial])).write(
        stack.job_storage, stack.settings.layout.publish_log_uri(sample.day, stuck.manifest_id)
    )
    stack.job_storage.write_bytes(partial, b"PAR1")
    denied = FaultRule("access_denied", service="s3", operation="DeleteObjects", resource=f"*{stuck.manifest_id}*")
    wait_for_expired_claims(stack, [stuck])

    with faults.injected(stack.endpoint, denied):
        ingested = ingest(dags)

    states = task_states(ingested)
    assert states["sweep_expired_claims"] == ["failed"], states
    assert states["wait_for_pending_work"] == ["success"], states
    assert "success" in states["convert_manifest.finalise"], states
    assert stack.ledger.get_manifest(stuck.manifest_id).state == "CLAIMED"  # nothing released without the delete
    alerts = _alerts(stack, probe)
    assert [a["manifest_id"] for a in alerts] == [stuck.manifest_id], alerts
    # Once S3 deletes again, the next run's sweep repairs it and the day completes.
    ingest(dags)
    assert stack.ledger.get_manifest(stuck.manifest_id).state == "COMPENSATED"
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=stack.names.lake_bucket, Prefix=partial.split("/", 3)[3])
    run(dags, "ndjson_end_of_day", day=sample.day)
    assert_day_converted_exactly(stack, sample)


def test_a_retried_finalise_still_alerts_once_for_files_its_first_try_failed(dags, aws_endpoint, monkeypatch):
    """The first finalise FAILED the files and died before its alert went out: the retry alerts, once."""
    stack = make_stack(aws_endpoint, max_attempts=1)
    topic_arn, probe = _alert_probe(stack)
    configure(stack, monkeypatch, max_attempts=1, alert_topic_arn=topic_arn)
    sample = land(stack, files=2)

    def always_dies(*args, **kwargs):
        raise local_glue.LocalGlueRunError("injected", 1, "job crashes")

    monkeypatch.setattr(local_glue, "run_glue_script_locally", always_dies)
    # SNS refuses the first two publishes: the conversion's own failure alert and the first finalise's.
    refused = FaultRule("access_denied", service="sns", operation="Publish", max_count=2)
    with faults.injected(stack.endpoint, refused):
        ingested = ingest(dags)

    assert task_states(ingested)["convert_manifest.finalise"] == ["failed"]
    report = day_report(stack.ledger, stack.storage, stack.settings, sample.day)
    assert report["not_terminal"] == []
    assert report["files_by_state"]["FAILED"] > 0
    alerts = [a for a in _alerts(stack, probe) if "failed" in a]
    assert len(alerts) == 1, alerts
    # Every FAILED version, the overwritten key's first one too (no longer in the listing the report reads).
    assert set(report["failed"]) <= set(alerts[0]["failed"])
    assert set(stack.ledger.get_states(alerts[0]["failed"]).values()) == {FileState.FAILED}
    ingest(dags)  # a later run's sweep finds nothing left to alert about
    assert [a for a in _alerts(stack, probe) if "failed" in a] == []
    assert parquet_event_ids(stack) == []


def test_a_failed_delete_keeps_the_claims_alerts_and_the_next_sweep_repairs(dags, aws_endpoint, monkeypatch):
    stack = make_stack(aws_endpoint)
    topic_arn, probe = _alert_probe(stack)
    configure(stack, monkeypatch, alert_topic_arn=topic_arn)
    sample = land(stack, files=2)
    real_run = local_glue.run_glue_script_locally
    partial_outputs = []

    def publishes_half_then_dies(script, arguments, **kwargs):
        if len(partial_outputs) < 3:  # every try of the first ingest run dies mid-publish
            uri = arguments.layout.part_uri(arguments.day, arguments.manifest_id, 0, "snappy")
            log_uri = arguments.layout.publish_log_uri(arguments.day, arguments.manifest_id)
            PublishLog(frozenset([uri])).write(stack.job_storage, log_uri)
            stack.job_storage.write_bytes(uri, b"PAR1")
            partial_outputs.append(uri)
            raise local_glue.LocalGlueRunError(script, 1, "executor lost mid-publish")
        return real_run(script, arguments, **kwargs)

    monkeypatch.setattr(local_glue, "run_glue_script_locally", publishes_half_then_dies)
    denied = FaultRule("access_denied", service="s3", operation="DeleteObjects", identity="*-mwaa-execution")
    with faults.injected(stack.endpoint, denied):
        ingested = ingest(dags)

    assert task_states(ingested)["convert_manifest.finalise"] == ["failed"]
    (manifest_id,) = {a["manifest_id"] for a in _alerts(stack, probe)}
    record = stack.ledger.get_manifest(manifest_id)
    assert record.state == "CLAIMED"
    assert set(stack.ledger.get_states(stack.ledger.identities_of(record)).values()) == {FileState.CLAIMED}
    # The sweeper retries on its next pass, not after the claim's hour-long lease.
    assert manifest_id in stack.ledger.expired_manifests(record.day)
    again = ingest(dags)
    assert str(again.state) == "success", task_states(again)
    assert stack.ledger.get_manifest(manifest_id).state == "COMPENSATED"
    run(dags, "ndjson_end_of_day", day=sample.day)
    assert_day_converted_exactly(stack, sample)

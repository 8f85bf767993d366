"""Builders for S3 notification bodies, with the encodings and fields AWS really sends."""

from __future__ import annotations

import json
from urllib.parse import quote_plus

DAY = "2026-11-24"
DAY_PATH = "incoming/2026/11/24/"


def make_record(
    bucket: str,
    key: str,
    *,
    etag: str = "e0",
    size: int = 100,
    sequencer: str | None = None,
    event_name: str = "ObjectCreated:Put",
    version_id: str | None = None,
) -> dict:
    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag}
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": f"{DAY}T10:00:00.000Z",
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }


def make_body(*records: dict) -> str:
    return json.dumps({"Records": list(records)})


def send(stack, *bodies: str) -> None:
    for start in range(0, len(bodies), 10):
        stack.sqs.send_message_batch(
            QueueUrl=stack.queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def queue_depth(stack, url: str | None = None) -> tuple[int, int]:
    attrs = stack.sqs.get_queue_attributes(
        QueueUrl=url or stack.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

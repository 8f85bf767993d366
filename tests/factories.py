"""Shared test factories: the test day, S3 notification bodies as AWS sends them, registered files, job results.

Tests build their inputs here instead of importing helpers from each other.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.intake import registration_for
from ndjson_pipeline.manifest import FileResult

DAY = "2026-11-24"
DAY_PATH = "incoming/2026/11/24/"


# ------------------------------------------------------------------ S3 notifications


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


# ------------------------------------------------------------------ ledger contents


def register_files(
    stack: Any, count: int, *, prefix: str = "f", size: int = 100, day_path: str = DAY_PATH
) -> list[str]:
    """Register ``count`` new pending files of ``DAY`` in the stack's ledger; return their identities."""
    regs = [
        registration_for(
            stack.names.landing_bucket,
            f"{day_path}{prefix}{i:05d}.ndjson",
            size,
            f"etag{i}",
            f"{DAY}T01:00:00+00:00",
            stack.settings,
        )
        for i in range(count)
    ]
    outcome = stack.ledger.register(regs)
    assert len(outcome.registered) == count
    return [r.file.identity for r in regs]


def claim(stack: Any, *, max_files: int = 99, max_bytes: int = 10**12, lease_seconds: int = 600) -> Any:
    """One claim of ``DAY``'s pending files (a Manifest, or None when nothing is pending)."""
    return stack.ledger.claim_batch(DAY, max_files=max_files, max_bytes=max_bytes, lease_seconds=lease_seconds)


def file_result(identity: str, state: FileState, **counts: Any) -> FileResult:
    """What the conversion job reports for one file."""
    return FileResult(identity, FileId.parse(identity).uri, state, **counts)

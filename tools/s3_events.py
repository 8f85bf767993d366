"""S3 object-created notifications as S3 sends them to SQS: what tests and the soak deliver by hand.

S3 URL-encodes the key (a space as ``+``, ``/`` kept) and delivers at least
once, in any order; moto sends one event per put, so duplicates, reordering and
S3's own encoding are delivered with these.
"""

from __future__ import annotations

import json
from urllib.parse import quote_plus

EVENT_TIME = "2026-11-24T10:00:00.000Z"  # the tests' day (tests.factories.DAY)


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
    """One ``ObjectCreated`` record, its key encoded as S3 encodes it."""
    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag}
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": EVENT_TIME,
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }


def make_body(*records: dict) -> str:
    """An SQS message body of S3 records."""
    return json.dumps({"Records": list(records)})

"""The landing bucket's layout and acceptance rules, and the listing of one landing day.

Keys are laid out as ``<landing_prefix>YYYY/MM/DD/...``; intake (from S3
notifications), the listing reconcile, the day report and the local run all
read a day and judge its objects the same way, through this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ndjson_pipeline.files import FileId, FileVersion
from ndjson_pipeline.ledger import Registration
from ndjson_pipeline.settings import PipelineSettings

_DAY_IN_KEY = re.compile(r"(\d{4})/(\d{2})/(\d{2})/")
MAX_KEY_BYTES = 1024  # S3's limit on an object key (UTF-8)


def day_of_key(key: str, settings: PipelineSettings) -> str | None:
    """The landing day of a key laid out as ``<landing_prefix>YYYY/MM/DD/...``, or None."""
    if not key.startswith(settings.landing_prefix):
        return None
    match = _DAY_IN_KEY.match(key, len(settings.landing_prefix))
    if not match:
        return None
    day = "-".join(match.groups())
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return None
    return day


def day_prefix(day: str, settings: PipelineSettings) -> str:
    return f"{settings.landing_prefix}{day.replace('-', '/')}/"


def rejection_reason(key: str, size: int, settings: PipelineSettings) -> str | None:
    """Why a landing object cannot be converted, or None when it is acceptable."""
    key_bytes = len(key.encode("utf-8", "surrogatepass"))
    if key_bytes > MAX_KEY_BYTES:
        return f"key of {key_bytes} bytes is longer than S3's {MAX_KEY_BYTES:,}-byte limit"
    if not key.lower().endswith(settings.allowed_suffixes):
        return f"unsupported file type: key must end with one of {', '.join(settings.allowed_suffixes)}"
    if size <= 0:
        return "empty object (0 bytes)"
    if size > settings.max_file_bytes:
        return f"object of {size} bytes exceeds max_file_bytes {settings.max_file_bytes}"
    if day_of_key(key, settings) is None:
        return f"key is outside the landing layout {settings.landing_prefix}YYYY/MM/DD/"
    return None


def registration_for(
    bucket: str,
    key: str,
    size: int,
    etag: str,
    event_time: str,
    settings: PipelineSettings,
    *,
    sequencer: str | None = None,
    version_id: str | None = None,
) -> Registration:
    rejection = rejection_reason(key, size, settings)
    day = day_of_key(key, settings) or event_time[:10]
    return Registration(
        file=FileVersion(bucket=bucket, key=key, etag=etag, size=size, version_id=version_id),
        day=day,
        event_time=event_time,
        sequencer=sequencer,
        rejection=rejection,
    )


def day_listing_pages(s3: Any, bucket: str, day: str, settings: PipelineSettings) -> Iterator[list[dict[str, Any]]]:
    """The day's landing objects, one listing page (up to 1,000) at a time, so memory never grows with the day."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=day_prefix(day, settings)):
        if page.get("Contents"):
            yield page["Contents"]


def holds_version(s3: Any, file_id: FileId) -> bool:
    """Whether S3 lists ``file_id``'s key with its eTag now (one ListObjectsV2: the key sorts first under itself)."""
    page = s3.list_objects_v2(Bucket=file_id.bucket, Prefix=file_id.key, MaxKeys=1)
    return any(FileId.from_listing(file_id.bucket, obj) == file_id for obj in page.get("Contents", []))

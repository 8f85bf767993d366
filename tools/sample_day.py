"""A generated landing day with the awkward cases a real day has, and what converting it must yield.

Used by the local run and the end-to-end tests: ordinary NDJSON files with a
few bad lines, an empty file, a gzip file, a file with a suffix the pipeline
does not accept, a key with characters URLs treat specially, a key overwritten
before it was processed, and one duplicated S3 notification.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from ndjson_pipeline.landing import day_prefix
from ndjson_pipeline.settings import PipelineSettings
from tools.sample_data import bad_line, gzip_body, make_event

RESCUED_KINDS = ("type_conflict",)  # kept with _rescued_data in the default "rescue" read mode


@dataclass
class SampleDay:
    day: str
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # in upload order
    rows: dict[str, set[str]] = field(default_factory=dict)  # key -> event ids that must land in Parquet
    bad_lines: dict[str, int] = field(default_factory=dict)  # key -> lines that must land in quarantine

    @property
    def expected_rows(self) -> set[str]:
        return set().union(*self.rows.values())

    @property
    def expected_bad_lines(self) -> int:
        return sum(self.bad_lines.values())

    def add(self, key: str, body: bytes, rows: set[str], bad: int) -> None:
        self.uploads.append((key, body))
        self.rows[key] = rows  # an overwrite replaces what the key must yield
        self.bad_lines[key] = bad


def ndjson_body(
    rng: random.Random, prefix: str, lines: int, bad_fraction: float, day: str
) -> tuple[bytes, set[str], int]:
    """``lines`` NDJSON lines of ``day``'s events, some bad: the body, the event ids it must yield, its bad lines."""
    out, rows, bad = [], set(), 0
    for n in range(lines):
        event_id = f"{prefix}-{n}"
        if rng.random() < bad_fraction:
            text, kind = bad_line(rng, event_id)
            if kind in RESCUED_KINDS:
                rows.add(event_id)
            else:
                bad += 1
        else:
            text = json.dumps(make_event(rng, event_id, day), separators=(",", ":"))
            rows.add(event_id)
        out.append(text)
    return ("\n".join(out) + "\n").encode(), rows, bad


def sample_day(day: str, settings: PipelineSettings, *, files: int = 200, seed: int = 7) -> SampleDay:
    rng = random.Random(seed)
    prefix = day_prefix(day, settings)
    sample = SampleDay(day)
    for i in range(files):
        body, rows, bad = ndjson_body(rng, f"f{i:04d}", rng.randint(20, 80), 0.03, day)
        sample.add(f"{prefix}batch-{i:04d}.ndjson", body, rows, bad)
    sample.add(f"{prefix}empty.ndjson", b"", set(), 0)
    body, rows, bad = ndjson_body(rng, "gz", 40, 0.0, day)
    sample.add(f"{prefix}compressed.ndjson.gz", gzip_body(body), rows, bad)
    sample.uploads.append((f"{prefix}notes.txt", b"not data\n"))  # rejected at intake: suffix
    # S3 keys may hold any character: this one is converted like any other, under its exact name.
    body, rows, bad = ndjson_body(rng, "awkward", 12, 0.0, day)
    sample.add(f"{prefix}report #1?v=2&x=50%+ünï//copy.ndjson", body, rows, bad)
    for version in (1, 2):
        body, rows, bad = ndjson_body(rng, f"over-v{version}", 10, 0.0, day)
        sample.add(f"{prefix}overwritten key.ndjson", body, rows, bad)
    return sample


def upload(sample: SampleDay, s3: Any, sqs: Any, queue_url: str, bucket: str) -> None:
    """Put every object in order, then deliver one notification twice (S3 delivers at least once)."""
    for key, body in sample.uploads:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    message = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=5)["Messages"][0]
    sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)

"""What a soak lands, and the book of every version it landed with the rows and bad lines each must yield.

Event ids are unique per version (``w<round>k<key>v<version>-<line>``), so the expected row set of any set of
versions is exact, and a row of the wrong version cannot hide behind the right one's id.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId
from ndjson_pipeline.landing import day_of_key, day_prefix
from ndjson_pipeline.settings import PipelineSettings
from tools.s3_events import make_body, make_record
from tools.sample_data import gzip_body
from tools.sample_day import ndjson_body
from tools.soak.scenario import Wave

LONG_KEY_BYTES = 1000  # S3 allows 1,024


@dataclass(frozen=True)
class Version:
    """One landed object version and what converting it must give.

    ``kind``: ``data`` (converts), ``rejected`` (empty or an unaccepted suffix: QUARANTINED at intake),
    ``unreadable`` (the job is refused it: QUARANTINED by a job that isolates it, or FAILED with an alert),
    ``long_key`` (a 1,000-byte key: converts like ``data``).
    """

    key: str
    day: str
    etag: str
    size: int
    kind: str
    rows: frozenset[str]
    lines: int  # non-blank lines: the job's rows_in
    bad: int  # lines that must be quarantined
    bucket: str

    @property
    def identity(self) -> str:
        return str(FileId(self.bucket, self.key, self.etag))


@dataclass
class LandingBook:
    """Lands waves through the account owner's clients (S3 notifications reach the queue) and books them."""

    settings: PipelineSettings
    s3: Any
    sqs: Any
    queue_url: str
    seed: int
    versions: list[Version] = field(default_factory=list)
    malformed_bodies: list[str] = field(default_factory=list)
    duplicates_sent: int = 0

    @property
    def bucket(self) -> str:
        return self.settings.names.landing_bucket

    def days(self) -> list[str]:
        return sorted({v.day for v in self.versions})

    def current(self) -> dict[str, Version]:
        """key -> the version S3 holds now (the last one landed)."""
        return {v.key: v for v in self.versions}

    def unreadable_keys(self) -> list[str]:
        return sorted({v.key for v in self.versions if v.kind == "unreadable"})

    def land(self, round_index: int, wave: Wave) -> None:
        rng = random.Random(self.seed * 7919 + round_index)
        today = utcnow().date()
        old_day = (today - timedelta(days=3)).isoformat()
        prefix = day_prefix(today.isoformat(), self.settings)
        tag = f"w{round_index:02d}"
        for n in range(wave.new_files):
            suffix = ".ndjson.gz" if n < wave.gzip else ".ndjson"
            self._put(rng, f"{prefix}soak-{tag}-{n:04d}{suffix}", f"{tag}k{n:04d}v0", "data")
        for n in range(wave.unreadable):
            self._put(rng, f"{prefix}soak-{tag}-unreadable-{n}.ndjson", f"{tag}u{n}v0", "unreadable")
        for n in range(wave.long_keys):
            head = f"{prefix}soak-{tag}-long-{n}-"
            key = head + "x" * (LONG_KEY_BYTES - len(head) - len(".ndjson")) + ".ndjson"
            self._put(rng, key, f"{tag}l{n}v0", "long_key")
        old_prefix = day_prefix(old_day, self.settings)
        for n in range(wave.old_day_files):
            self._put(rng, f"{old_prefix}soak-{tag}-late-{n:04d}.ndjson", f"{tag}o{n:04d}v0", "data")
        for n in range(wave.rejected):
            name = "empty.ndjson" if (round_index + n) % 2 == 0 else "notes.txt"
            self._put_raw(f"{prefix}soak-{tag}-{name}", b"" if name.endswith(".ndjson") else b"not data\n", "rejected")
        self._overwrite(rng, wave.overwrites, tag)
        self._duplicate(rng, wave.duplicates)
        for n in range(wave.malformed):
            body = "not an S3 event" if n % 2 == 0 else json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
            self.malformed_bodies.append(body)

    def _overwrite(self, rng: random.Random, count: int, tag: str) -> None:
        candidates = sorted(k for k, v in self.current().items() if v.kind == "data" and v.key.endswith(".ndjson"))
        for key in rng.sample(candidates, min(count, len(candidates))):
            versions = sum(v.key == key for v in self.versions)
            self._put(rng, key, f"{tag}r{len(self.versions):04d}v{versions}", "data")

    def _duplicate(self, rng: random.Random, count: int) -> None:
        """Deliver some earlier versions' notifications again, as S3's at-least-once delivery does."""
        landed = [v for v in self.versions if v.kind != "long_key"]
        for version in rng.sample(landed, min(count, len(landed))):
            record = make_record(self.bucket, version.key, etag=version.etag, size=version.size)
            record["eventTime"] = iso(utcnow()).replace("+00:00", "Z")
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=make_body(record))
            self.duplicates_sent += 1

    def _put(self, rng: random.Random, key: str, tag: str, kind: str) -> None:
        lines = rng.randint(20, 60)
        body, rows, bad = ndjson_body(rng, tag, lines, 0.04, day_of_key(key, self.settings))
        if key.endswith(".gz"):
            body = gzip_body(body)
        self._book(key, body, kind, frozenset(rows), lines, bad)

    def _put_raw(self, key: str, body: bytes, kind: str) -> None:
        self._book(key, body, kind, frozenset(), 0, 0)

    def _book(self, key: str, body: bytes, kind: str, rows: frozenset[str], lines: int, bad: int) -> None:
        etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"].strip('"')
        day = day_of_key(key, self.settings)
        self.versions.append(Version(key, day, etag, len(body), kind, rows, lines, bad, self.bucket))

"""Landing file versions: their identity and the states a version goes through.

Identity of a file version is (bucket, key, eTag): eTag is in both S3 events and
S3 listings, so notifications and the reconcile listing agree on identity.
``FileId`` owns the one text form ``bucket/key#etag`` used in manifests, results
and the ledger. Shipped to Glue with the job, so it imports nothing but the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FileState(StrEnum):
    """The life of a file version; DONE and QUARANTINED are also the job's per-file outcomes."""

    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    DONE = "DONE"
    QUARANTINED = "QUARANTINED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({FileState.DONE, FileState.QUARANTINED, FileState.FAILED})
# What a conversion can say about a file it was given.
JOB_OUTCOMES = frozenset({FileState.DONE, FileState.QUARANTINED})


@dataclass(frozen=True, order=True)
class FileId:
    """Identity of one version of one landing object; ``str()`` gives its text form ``bucket/key#etag``."""

    bucket: str
    key: str
    etag: str

    def __str__(self) -> str:
        return f"{self.bucket}/{self.key}#{self.etag}"

    @classmethod
    def parse(cls, text: str) -> FileId:
        """The inverse of ``str()``: bucket names hold no ``/`` and eTags no ``#``, keys may hold both."""
        bucket_key, sep, etag = text.rpartition("#")
        bucket, slash, key = bucket_key.partition("/")
        if not (sep and slash and bucket and key and etag):
            raise ValueError(f"not a file identity (bucket/key#etag): {text!r}")
        return cls(bucket, key, etag)

    @classmethod
    def from_listing(cls, bucket: str, obj: dict[str, Any]) -> FileId:
        """The identity of an object from ListObjectsV2 (its quoted ETag is the one S3 events carry)."""
        return cls(bucket, obj["Key"], obj["ETag"].strip('"'))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class FileVersion:
    """One version of one landing object, with what a reader needs to know about it."""

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None

    @property
    def file_id(self) -> FileId:
        return FileId(self.bucket, self.key, self.etag)

    @property
    def identity(self) -> str:
        return str(self.file_id)

    @property
    def uri(self) -> str:
        return self.file_id.uri

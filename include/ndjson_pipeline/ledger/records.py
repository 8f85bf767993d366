"""The ledger's records, decoded from items: a file version's life and a manifest's.

States::

    file      PENDING -> CLAIMED (manifest id, lease) -> DONE | QUARANTINED (reason)
              CLAIMED -> PENDING (attempts + 1) | FAILED (attempts reached the maximum; alert pending)
              (new)   -> QUARANTINED (rejected at intake); a version S3 no longer holds is
                         QUARANTINED as superseded by its conversion
              FAILED  -> PENDING (an operator requeues it)
    manifest  CLAIMED -> SUCCEEDED | COMPENSATED
              CLAIMED, compensating (fenced: no run may start or be adopted) -> COMPENSATED | SUCCEEDED

A record's field names are its item's attribute names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ndjson_pipeline.files import FileId, FileState, FileVersion
from ndjson_pipeline.manifest import ManifestRef


class ManifestState(StrEnum):
    CLAIMED = "CLAIMED"
    SUCCEEDED = "SUCCEEDED"
    COMPENSATED = "COMPENSATED"


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value)


def _count(item: Mapping[str, Any], name: str) -> int:
    return int(item.get(name, 0))


def _expiry(item: Mapping[str, Any], ttl_attribute: str) -> int | None:
    value = item.get(ttl_attribute)
    return None if value is None else int(value)


@dataclass(frozen=True)
class FileRecord:
    """One file version as the ledger holds it."""

    file: FileVersion
    day: str
    state: FileState
    event_time: str
    registered_at: str
    updated_at: str
    attempts: int = 0
    claims: int = 0
    sequencer: str | None = None
    reason: str | None = None
    manifest_id: str | None = None
    lease_expires_at: str | None = None
    finished_at: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rescued: int = 0
    rows_quarantined: int = 0
    # Epoch seconds at which DynamoDB's TTL removes the item; set on terminal states only.
    expires_at: int | None = None
    # On a FAILED version whose alert is not published yet: the manifest whose compensation failed it.
    alert_pending: str | None = None

    @property
    def file_id(self) -> FileId:
        return self.file.file_id

    @property
    def identity(self) -> str:
        return self.file.identity

    @property
    def reconciled(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined

    @classmethod
    def from_item(cls, item: Mapping[str, Any], ttl_attribute: str) -> FileRecord:
        return cls(
            file=file_version_of(item),
            day=str(item["day"]),
            state=FileState(item["state"]),
            event_time=str(item["event_time"]),
            registered_at=str(item["registered_at"]),
            updated_at=str(item["updated_at"]),
            attempts=_count(item, "attempts"),
            claims=_count(item, "claims"),
            sequencer=_text(item, "sequencer"),
            reason=_text(item, "reason"),
            manifest_id=_text(item, "manifest_id"),
            lease_expires_at=_text(item, "lease_expires_at"),
            finished_at=_text(item, "finished_at"),
            rows_in=_count(item, "rows_in"),
            rows_out=_count(item, "rows_out"),
            rows_rescued=_count(item, "rows_rescued"),
            rows_quarantined=_count(item, "rows_quarantined"),
            expires_at=_expiry(item, ttl_attribute),
            alert_pending=_text(item, "alert_pending"),
        )


def file_version_of(item: Mapping[str, Any]) -> FileVersion:
    """The file version an item (or an index projection of one) describes."""
    return FileVersion(
        bucket=str(item["bucket"]),
        key=str(item["key"]),
        etag=str(item["etag"]),
        size=int(item["size"]),
        version_id=_text(item, "version_id"),
    )


@dataclass(frozen=True)
class ManifestRecord:
    """One claim of a batch of file versions, and how it ended."""

    manifest_id: str
    day: str
    state: ManifestState
    files: frozenset[str]
    file_count: int
    total_bytes: int
    generation: int
    owner: str
    created_at: str
    lease_expires_at: str
    closed_at: str | None = None
    reason: str | None = None
    expires_at: int | None = None
    # Set by the first step of a compensation (the fence): from then on no run may start or be adopted.
    compensating_at: str | None = None
    run_id: str | None = None  # the conversion run a task started or adopted last
    failure_alerted_at: str | None = None  # when the conversion's final failure was alerted

    @property
    def is_open(self) -> bool:
        """Claimed and not being compensated: a conversion may (still) work on it."""
        return self.state is ManifestState.CLAIMED and self.compensating_at is None

    @property
    def status(self) -> str:
        """The state, or COMPENSATING while a compensation is under way."""
        return "COMPENSATING" if self.state is ManifestState.CLAIMED and self.compensating_at else str(self.state)

    def ref(self) -> ManifestRef:
        return ManifestRef(self.manifest_id, self.day, self.file_count, self.total_bytes)

    @classmethod
    def from_item(cls, item: Mapping[str, Any], ttl_attribute: str) -> ManifestRecord:
        return cls(
            manifest_id=str(item["manifest_id"]),
            day=str(item["day"]),
            state=ManifestState(item["state"]),
            files=frozenset(item["files"]),
            file_count=_count(item, "file_count"),
            total_bytes=_count(item, "total_bytes"),
            generation=_count(item, "generation"),
            owner=str(item.get("owner", "-")),
            created_at=str(item["created_at"]),
            lease_expires_at=str(item["lease_expires_at"]),
            closed_at=_text(item, "closed_at"),
            reason=_text(item, "reason"),
            expires_at=_expiry(item, ttl_attribute),
            compensating_at=_text(item, "compensating_at"),
            run_id=_text(item, "run_id"),
            failure_alerted_at=_text(item, "failure_alerted_at"),
        )

"""The ledger's records, decoded from items: a file version's life and a manifest's.

States::

    file      PENDING -> CLAIMED (manifest id) -> DONE | QUARANTINED (reason)
              CLAIMED -> PENDING (attempts + 1) | FAILED (attempts reached the maximum; alert pending)
              (new)   -> QUARANTINED (rejected at intake); a version S3 no longer holds is
                         QUARANTINED as superseded by its conversion
              FAILED  -> PENDING (an operator requeues it)
    group     PENDING -> CLAIMED -> FINISHED (each file DONE or QUARANTINED) | PENDING | FAILED
    manifest  CLAIMED -> SUCCEEDED | COMPENSATED
              CLAIMED, compensating (fenced: no run may start or be adopted) -> COMPENSATED | SUCCEEDED

A file version's state is its group's (``groups``): a ``FileRecord`` is read
from the version's own item and its group's. Only a version rejected at intake
has a state of its own (it never joins a group).

A record's field names are its item's attribute names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from ndjson_pipeline.clock import iso
from ndjson_pipeline.files import FileId, FileState, FileVersion
from ndjson_pipeline.ledger.codec import encode_item
from ndjson_pipeline.ledger.schema import TableSchema
from ndjson_pipeline.manifest import FileResult, ManifestRef


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
    finished_at: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rescued: int = 0
    rows_quarantined: int = 0
    # Epoch seconds at which DynamoDB's TTL removes the item; set on terminal states only.
    expires_at: int | None = None
    # On a FAILED version whose alert is not published yet: the manifest whose compensation failed it.
    alert_pending: str | None = None
    group_id: str | None = None

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
    def from_items(cls, item: Mapping[str, Any], group: Group | None, ttl_attribute: str) -> FileRecord:
        """A version's record from its item and its group's (None for a version rejected at intake)."""
        file = file_version_of(item)
        base = cls(
            file=file,
            day=str(item["day"]),
            state=FileState(item.get("state", FileState.PENDING)),
            event_time=str(item["event_time"]),
            registered_at=str(item["registered_at"]),
            updated_at=str(item.get("updated_at", item["registered_at"])),
            sequencer=_text(item, "sequencer"),
            reason=_text(item, "reason"),
            expires_at=_expiry(item, ttl_attribute),
            group_id=_text(item, "group_id"),
        )
        if group is None:
            return base
        result = group.results.get(file.identity)
        return replace(
            base,
            state=group.file_state(file.identity),
            updated_at=group.updated_at,
            attempts=group.attempts,
            claims=group.claims,
            reason=result.reason if result else group.reason,
            manifest_id=group.manifest_id,
            finished_at=group.finished_at if result else None,
            rows_in=result.rows_in if result else 0,
            rows_out=result.rows_out if result else 0,
            rows_rescued=result.rows_rescued if result else 0,
            rows_quarantined=result.rows_quarantined if result else 0,
            expires_at=group.expires_at,
            alert_pending=group.alert_pending,
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


class GroupState(StrEnum):
    PENDING = "PENDING"  # waiting for a claim (in the pending index)
    CLAIMED = "CLAIMED"  # held by ``manifest_id``
    FINISHED = "FINISHED"  # converted by ``manifest_id``: each file DONE or QUARANTINED, as ``results`` say
    FAILED = "FAILED"  # released too often; ``alert_pending`` until its alert is published


@dataclass(frozen=True)
class Group:
    """File versions of one day registered together, and where they are in their life."""

    group_id: str
    day: str
    state: GroupState
    files: tuple[FileVersion, ...]
    registered_at: str
    updated_at: str
    version: int = 0  # 0 when new; every write stores the next one, on condition the item still has the one read
    attempts: int = 0  # failed conversions since registration (or the last requeue)
    claims: int = 0  # how often the group was claimed; a manifest's generation sums them
    manifest_id: str | None = None
    ended_by: str | None = None  # the manifest whose finaliser or compensation last ended a claim of the group
    reason: str | None = None
    alert_pending: str | None = None  # on a FAILED group: the manifest whose compensation failed it
    finished_at: str | None = None
    results: Mapping[str, FileResult] = field(default_factory=dict)
    expires_at: int | None = None

    @property
    def identities(self) -> list[str]:
        return [f.identity for f in self.files]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file_state(self, identity: str) -> FileState:
        """The state of one of the group's files."""
        if self.state is GroupState.FINISHED:
            return self.results[identity].outcome
        return FileState(self.state.value)

    def changed(self, now: datetime, **changes: Any) -> Group:
        """The next version of this group, as a write after reading it would store it."""
        return replace(self, version=self.version + 1, updated_at=iso(now), **changes)

    # ------------------------------------------------------------------ items

    def item(self, schema: TableSchema) -> dict[str, Any]:
        """The group's typed item, with the index slot and TTL its state calls for."""
        plain: dict[str, Any] = {
            **schema.group_key(self.group_id),
            "group_id": self.group_id,
            "day": self.day,
            "state": self.state,
            "files": [_file_entry(f, self.results.get(f.identity)) for f in self.files],
            "file_count": len(self.files),
            "total_bytes": self.total_bytes,
            "registered_at": self.registered_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "attempts": self.attempts,
            "claims": self.claims,
            "manifest_id": self.manifest_id,
            "ended_by": self.ended_by,
            "reason": self.reason,
            "alert_pending": self.alert_pending,
            "finished_at": self.finished_at,
            schema.ttl_attribute: self.expires_at,
        }
        if self.state is GroupState.PENDING:
            plain.update(schema.pending_slot(self.day, self.group_id, self.registered_at))
        elif self.state is GroupState.FAILED and self.alert_pending:
            plain.update(schema.alert_slot(self.day, self.group_id, self.updated_at))
        return encode_item(plain)

    @classmethod
    def from_item(cls, item: Mapping[str, Any], ttl_attribute: str) -> Group:
        files, results = [], {}
        for entry in item["files"]:
            file, result = _from_entry(entry)
            files.append(file)
            if result is not None:
                results[file.identity] = result
        expires = item.get(ttl_attribute)
        return cls(
            group_id=str(item["group_id"]),
            day=str(item["day"]),
            state=GroupState(item["state"]),
            files=tuple(files),
            registered_at=str(item["registered_at"]),
            updated_at=str(item["updated_at"]),
            version=int(item.get("version", 0)),
            attempts=int(item.get("attempts", 0)),
            claims=int(item.get("claims", 0)),
            manifest_id=_text(item, "manifest_id"),
            ended_by=_text(item, "ended_by"),
            reason=_text(item, "reason"),
            alert_pending=_text(item, "alert_pending"),
            finished_at=_text(item, "finished_at"),
            results=results,
            expires_at=None if expires is None else int(expires),
        )


def _file_entry(file: FileVersion, result: FileResult | None) -> dict[str, Any]:
    # Short names: every write of a group pays for its bytes.
    entry: dict[str, Any] = {"id": file.identity, "size": file.size}
    if file.version_id:
        entry["vid"] = file.version_id
    if result is not None:
        entry["out"] = str(result.outcome)
        entry["rows"] = [result.rows_in, result.rows_out, result.rows_quarantined, result.rows_rescued]
        if result.reason:
            entry["why"] = result.reason
    return entry


def _from_entry(entry: Mapping[str, Any]) -> tuple[FileVersion, FileResult | None]:
    file_id = FileId.parse(str(entry["id"]))
    file = FileVersion(file_id.bucket, file_id.key, file_id.etag, int(entry["size"]), _text(entry, "vid"))
    if "out" not in entry:
        return file, None
    rows_in, rows_out, rows_quarantined, rows_rescued = (int(n) for n in entry["rows"])
    result = FileResult(
        identity=file.identity,
        uri=file.uri,
        outcome=FileState(entry["out"]),
        reason=_text(entry, "why"),
        rows_in=rows_in,
        rows_out=rows_out,
        rows_rescued=rows_rescued,
        rows_quarantined=rows_quarantined,
    )
    return file, result


@dataclass(frozen=True)
class ManifestRecord:
    """One claim of a batch of file versions, and how it ended."""

    manifest_id: str
    day: str
    state: ManifestState
    groups: frozenset[str]
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
            groups=frozenset(item["groups"]),
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

"""The file ledger: one DynamoDB item per landing file version and its life.

Identity of a file version is (bucket, key, eTag). eTag is in both S3 events and
S3 listings, so notifications and the reconcile listing agree on identity; the
versionId, when the bucket has versioning, is kept as an attribute.

States::

    PENDING -> CLAIMED (manifest id, lease) -> DONE | QUARANTINED (reason)
    CLAIMED -> PENDING (attempts + 1) | FAILED (attempts reached the maximum)
    PENDING -> QUARANTINED (superseded by a newer version of the key)
    FAILED  -> PENDING (an operator requeues it)

Every transition is a conditional write. Pending files and open manifests are
found through a sparse index (``work_pk``/``work_sk``): only PENDING files and
open manifests carry its keys, pending files spread over shards per day, so
finding work reads only work and no day has a single hot key.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import JOB_OUTCOMES, FileId, FileState, FileVersion
from ndjson_pipeline.manifest import FileResult, Manifest
from ndjson_pipeline.resources import ledger_spec

log = logging.getLogger(__name__)

TRANSACTION_LIMIT = 100
# A claim writes its files and the manifest record in one transaction.
MAX_FILES_PER_CLAIM = TRANSACTION_LIMIT - 1
SEQUENCER_WIDTH = 32
_CONFLICT_RETRIES = 8


class ManifestState(StrEnum):
    CLAIMED = "CLAIMED"
    SUCCEEDED = "SUCCEEDED"
    COMPENSATED = "COMPENSATED"


class LedgerError(RuntimeError):
    """The ledger could not complete a write; the message names the item at fault."""


class IllegalTransitionError(LedgerError):
    """A state change was asked for that the state machine does not allow from the current state."""

    def __init__(self, what: str, current: str | None, wanted: str) -> None:
        super().__init__(f"{what}: cannot move from {current or 'absent'} to {wanted}")
        self.current = current
        self.wanted = wanted


@dataclass(frozen=True)
class Registration:
    """A file version seen by intake or reconcile, with its validation outcome."""

    file: FileVersion
    day: str
    event_time: str
    sequencer: str | None = None
    rejection: str | None = None


@dataclass
class RegisterOutcome:
    registered: list[str] = field(default_factory=list)
    already_known: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def stored(self) -> set[str]:
        """Identities whose record is now durable, whatever the outcome."""
        return {*self.registered, *self.already_known, *self.superseded, *self.quarantined}


@dataclass(frozen=True)
class PendingSummary:
    day: str
    files: int
    bytes: int
    oldest_registered_at: str | None
    exhaustive: bool

    def oldest_age_seconds(self, now: datetime) -> float:
        if self.oldest_registered_at is None:
            return 0.0
        return max(0.0, (now - datetime.fromisoformat(self.oldest_registered_at)).total_seconds())


def pad_sequencer(sequencer: str) -> str:
    """S3 sequencers compare as hex strings of equal length (left-padded with zeros)."""
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


def file_pk(bucket: str, key: str) -> str:
    return f"F#{bucket}/{key}"


def file_sk(etag: str) -> str:
    return f"V#{etag}"


def manifest_pk(manifest_id: str) -> str:
    return f"M#{manifest_id}"


def file_key(identity: str) -> dict[str, str]:
    file_id = FileId.parse(identity)
    return {"pk": file_pk(file_id.bucket, file_id.key), "sk": file_sk(file_id.etag)}


def identity_of_item(item: dict[str, Any]) -> str:
    return str(FileId(item["bucket"], item["key"], item["etag"]))


class Ledger:
    """Conditional, batched access to the ledger table through a boto3 DynamoDB client.

    :param client: a boto3 ``dynamodb`` client (from a provider hook in Airflow tasks).
    :param table: the ledger table name.
    :param terminal_ttl_days: days a terminal item is kept before DynamoDB expires it.
    :param pending_shards: spread of one day's pending files over index partitions.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        terminal_ttl_days: int = 30,
        pending_shards: int | None = None,
    ) -> None:
        spec = ledger_spec()
        self.client = client
        self.table = table
        self.terminal_ttl_days = terminal_ttl_days
        self.pending_shards = pending_shards or int(spec["pending_shards"])
        self.index = spec["work_index"]["name"]
        self.ttl_attribute = spec["ttl_attribute"]

    # ------------------------------------------------------------------ keys

    def _shard(self, identity: str) -> int:
        return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=4).digest()) % self.pending_shards

    @staticmethod
    def pending_partition(day: str, shard: int) -> str:
        return f"{day}#P#{shard:02d}"

    @staticmethod
    def open_manifests_partition(day: str) -> str:
        return f"{day}#M"

    def _expires_at(self, now: datetime) -> int:
        return int((now + timedelta(days=self.terminal_ttl_days)).timestamp())

    # ------------------------------------------------------------- register

    def register(self, registrations: Iterable[Registration]) -> RegisterOutcome:
        """Record file versions idempotently: a version already present is left untouched.

        An event whose sequencer is older than the newest one recorded for its key
        never makes that older version current: it is recorded QUARANTINED as
        superseded (the key now holds newer bytes).
        """
        outcome = RegisterOutcome()
        by_identity: dict[str, Registration] = {}
        for reg in registrations:
            if reg.file.identity in by_identity:
                outcome.already_known.append(reg.file.identity)  # a duplicate event within this batch
            else:
                by_identity[reg.file.identity] = reg
        if not by_identity:
            return outcome
        superseded = self._supersede_within_batch(list(by_identity.values()))
        todo = list(by_identity.values())
        for chunk in _chunks_by_actions(todo, lambda r: 2 if self._updates_head(r, superseded) else 1):
            self._register_chunk(chunk, superseded, outcome)
        return outcome

    @staticmethod
    def _supersede_within_batch(regs: list[Registration]) -> dict[str, str]:
        """Versions of one key in one batch: only the newest by sequencer may update the key's head."""
        newest: dict[tuple[str, str], Registration] = {}
        for reg in regs:
            if reg.sequencer is None or reg.rejection:
                continue
            slot = (reg.file.bucket, reg.file.key)
            if slot not in newest or pad_sequencer(reg.sequencer) > pad_sequencer(newest[slot].sequencer or ""):
                newest[slot] = reg
        superseded = {}
        for reg in regs:
            slot = (reg.file.bucket, reg.file.key)
            if reg.sequencer is not None and not reg.rejection and newest[slot] is not reg:
                superseded[reg.file.identity] = (
                    f"superseded: a newer version (eTag {newest[slot].file.etag}) of the key arrived"
                )
        return superseded

    @staticmethod
    def _updates_head(reg: Registration, superseded: dict[str, str]) -> bool:
        return reg.sequencer is not None and not reg.rejection and reg.file.identity not in superseded

    def _register_chunk(self, chunk: list[Registration], superseded: dict[str, str], outcome: RegisterOutcome) -> None:
        todo = list(chunk)
        for attempt in range(_CONFLICT_RETRIES):
            now = utcnow()
            actions: list[dict[str, Any]] = []
            owners: list[tuple[str, str]] = []  # (identity, "item" | "head") per action
            for reg in todo:
                identity = reg.file.identity
                actions.append({"Put": self._registration_put(reg, superseded.get(identity), now)})
                owners.append((identity, "item"))
                if self._updates_head(reg, superseded):
                    actions.append({"Update": self._head_update(reg, now)})
                    owners.append((identity, "head"))
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                known, stale, retry = set(), {}, False
                for (identity, part), reason in zip(owners, reasons, strict=True):
                    code = reason.get("Code")
                    if code == "ConditionalCheckFailed" and part == "item":
                        known.add(identity)
                    elif code == "ConditionalCheckFailed" and part == "head":
                        newer = _attr(reason.get("Item", {}), "latest_etag")
                        stale[identity] = f"superseded: a newer version (eTag {newer}) of the key was recorded"
                    elif code not in (None, "None"):
                        retry = True
                outcome.already_known.extend(sorted(known))
                superseded.update(stale)
                todo = [r for r in todo if r.file.identity not in known]
                if not known and not stale and retry:
                    _backoff(attempt)
                if not todo:
                    return
                continue
            for reg in todo:
                identity = reg.file.identity
                if reg.rejection:
                    outcome.quarantined.append(identity)
                elif identity in superseded:
                    outcome.superseded.append(identity)
                else:
                    outcome.registered.append(identity)
            return
        raise LedgerError(
            f"registering {len(todo)} file versions kept conflicting after {_CONFLICT_RETRIES} attempts "
            f"(first: {todo[0].file.uri})"
        )

    def _registration_put(self, reg: Registration, superseded_reason: str | None, now: datetime) -> dict:
        f = reg.file
        item: dict[str, Any] = {
            "pk": {"S": file_pk(f.bucket, f.key)},
            "sk": {"S": file_sk(f.etag)},
            "bucket": {"S": f.bucket},
            "key": {"S": f.key},
            "etag": {"S": f.etag},
            "size": {"N": str(f.size)},
            "day": {"S": reg.day},
            "event_time": {"S": reg.event_time},
            "registered_at": {"S": iso(now)},
            "updated_at": {"S": iso(now)},
            "attempts": {"N": "0"},
        }
        if f.version_id:
            item["version_id"] = {"S": f.version_id}
        if reg.sequencer:
            item["sequencer"] = {"S": pad_sequencer(reg.sequencer)}
        reason = reg.rejection or superseded_reason
        if reason:
            item["state"] = {"S": FileState.QUARANTINED}
            item["reason"] = {"S": reason}
            item[self.ttl_attribute] = {"N": str(self._expires_at(now))}
        else:
            item["state"] = {"S": FileState.PENDING}
            item["work_pk"] = {"S": self.pending_partition(reg.day, self._shard(f.identity))}
            item["work_sk"] = {"S": f"{iso(now)}#{f.identity}"}
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def _head_update(self, reg: Registration, now: datetime) -> dict:
        return {
            "TableName": self.table,
            "Key": {"pk": {"S": file_pk(reg.file.bucket, reg.file.key)}, "sk": {"S": "HEAD"}},
            "UpdateExpression": "SET latest_sequencer = :seq, latest_etag = :etag, #ttl = :ttl",
            "ConditionExpression": "attribute_not_exists(latest_sequencer) OR latest_sequencer < :seq",
            "ExpressionAttributeNames": {"#ttl": self.ttl_attribute},
            "ExpressionAttributeValues": {
                ":seq": {"S": pad_sequencer(reg.sequencer or "")},
                ":etag": {"S": reg.file.etag},
                ":ttl": {"N": str(self._expires_at(now))},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    # ---------------------------------------------------------------- reads

    def get_file(self, identity: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key=_typed(file_key(identity)), ConsistentRead=True)
        return _plain(item["Item"]) if "Item" in item else None

    def get_states(self, identities: list[str]) -> dict[str, FileState]:
        """States of many file versions (absent ones are left out), 100 keys per request."""
        names = {"#b": "bucket", "#k": "key", "#s": "state"}
        items = self.get_files(identities, projection="#b, #k, etag, #s", names=names)
        return {identity: FileState(item["state"]) for identity, item in items.items()}

    def get_files(
        self, identities: list[str], *, projection: str | None = None, names: dict[str, str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Ledger items of many file versions by identity (absent ones are left out), 100 keys per request."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(identities), 100):
            keys = [_typed(file_key(i)) for i in identities[start : start + 100]]
            spec: dict[str, Any] = {"Keys": keys}
            if projection:
                spec["ProjectionExpression"] = projection
            if names:
                spec["ExpressionAttributeNames"] = names
            request = {self.table: spec}
            for attempt in range(_CONFLICT_RETRIES):
                response = self.client.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self.table, []):
                    item = _plain(raw)
                    found[identity_of_item(item)] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise LedgerError(f"batch read of {len(keys)} ledger items stayed unprocessed")
        return found

    def iter_pending(self, day: str, *, page_size: int = 100, start_shard: int = 0) -> Iterator[FileVersion]:
        """Pending file versions of a day, oldest first within each shard, one bounded page at a time.

        The index is eventually consistent: a yielded file may already be claimed;
        claims are conditional, so that costs a retry, never a double claim.
        """
        for item in self._iter_pending_items(day, page_size, start_shard):
            yield _file_version(item)

    def _iter_pending_items(self, day: str, page_size: int, start_shard: int) -> Iterator[dict[str, Any]]:
        for offset in range(self.pending_shards):
            shard = (start_shard + offset) % self.pending_shards
            yield from self._query_pages(self.pending_partition(day, shard), page_size)

    def _query_pages(self, partition: str, page_size: int, upper_sk: str | None = None) -> Iterator[dict]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.index,
            "KeyConditionExpression": "work_pk = :p" + (" AND work_sk <= :upper" if upper_sk else ""),
            "ExpressionAttributeValues": {":p": {"S": partition}},
            "Limit": page_size,
        }
        if upper_sk:
            request["ExpressionAttributeValues"][":upper"] = {"S": upper_sk}
        while True:
            page = self.client.query(**request)
            for raw in page.get("Items", []):
                yield _plain(raw)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def pending_summary(self, day: str, *, enough_files: int, enough_bytes: int) -> PendingSummary:
        """Pending files and bytes of a day, counted only until either threshold is reached."""
        scan = PendingSummaryScan(self, day, enough_files=enough_files, enough_bytes=enough_bytes)
        while (request := scan.next_request()) is not None:
            scan.add_page(self.client.query(**request))
        return scan.result()

    # ---------------------------------------------------------------- claim

    def claim_batch(
        self,
        day: str,
        *,
        max_files: int,
        max_bytes: int,
        lease_seconds: int,
        owner: str = "",
        start_shard: int | None = None,
    ) -> Manifest | None:
        """Atomically claim up to ``max_files``/``max_bytes`` pending files of a day for one manifest.

        The manifest id is derived from the claimed files, and the claim is one
        transaction with a create-only manifest record: concurrent claimers never
        receive the same file, and a lost race only shrinks the batch. ``owner``
        (the claiming task) lets a retry of that task find the manifests it claimed.
        """
        max_files = min(max_files, MAX_FILES_PER_CLAIM)
        shard = random.randrange(self.pending_shards) if start_shard is None else start_shard  # noqa: S311
        candidates = self._take_candidates(day, max_files, max_bytes, shard)
        for attempt in range(_CONFLICT_RETRIES):
            if not candidates:
                return None
            generation = sum(int(item.get("claims", 0)) for item in candidates)
            manifest = Manifest.for_files(day, [_file_version(item) for item in candidates], generation)
            now = utcnow()
            lease_expires = now + timedelta(seconds=lease_seconds)
            actions = [
                {"Update": self._claim_update(f, manifest.manifest_id, lease_expires, now)} for f in manifest.files
            ]
            actions.append({"Put": self._manifest_put(manifest, lease_expires, now, owner)})
            try:
                # The token makes botocore's own retries of this very request idempotent.
                token = hashlib.sha256(f"{manifest.manifest_id}@{iso(now)}".encode()).hexdigest()[:36]
                self.client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                lost = {
                    f.identity
                    for f, reason in zip(manifest.files, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not lost and reasons[-1].get("Code") == "ConditionalCheckFailed":
                    raise LedgerError(f"manifest record {manifest.manifest_id} already exists for a new claim") from exc
                if not lost:
                    _backoff(attempt)
                candidates = [item for item in candidates if identity_of_item(item) not in lost]
                continue
            log.info(
                "claimed %d files (%d bytes) of %s into manifest %s",
                len(manifest.files),
                manifest.total_bytes,
                day,
                manifest.manifest_id,
            )
            return manifest
        raise LedgerError(f"claiming pending files of {day} kept conflicting after {_CONFLICT_RETRIES} attempts")

    def _take_candidates(self, day: str, max_files: int, max_bytes: int, start_shard: int) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        total = 0
        for item in self._iter_pending_items(day, max_files, start_shard):
            if taken and total + int(item["size"]) > max_bytes:
                break
            taken.append(item)
            total += int(item["size"])
            if len(taken) >= max_files:
                break
        return taken

    def _claim_update(self, f: FileVersion, manifest_id: str, lease_expires: datetime, now: datetime) -> dict:
        return {
            "TableName": self.table,
            "Key": _typed(file_key(f.identity)),
            "UpdateExpression": (
                "SET #s = :claimed, manifest_id = :m, lease_expires_at = :lease, updated_at = :now "
                "ADD claims :one REMOVE work_pk, work_sk"
            ),
            "ConditionExpression": "#s = :pending",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {
                ":claimed": {"S": FileState.CLAIMED},
                ":pending": {"S": FileState.PENDING},
                ":m": {"S": manifest_id},
                ":lease": {"S": iso(lease_expires)},
                ":now": {"S": iso(now)},
                ":one": {"N": "1"},
            },
        }

    def _manifest_put(self, manifest: Manifest, lease_expires: datetime, now: datetime, owner: str) -> dict:
        return {
            "TableName": self.table,
            "Item": {
                "pk": {"S": manifest_pk(manifest.manifest_id)},
                "sk": {"S": "MANIFEST"},
                "manifest_id": {"S": manifest.manifest_id},
                "day": {"S": manifest.day},
                "state": {"S": ManifestState.CLAIMED},
                "files": {"SS": [f.identity for f in manifest.files]},
                "file_count": {"N": str(len(manifest.files))},
                "total_bytes": {"N": str(manifest.total_bytes)},
                "generation": {"N": str(manifest.generation)},
                "owner": {"S": owner or "-"},
                "created_at": {"S": iso(now)},
                "lease_expires_at": {"S": iso(lease_expires)},
                "work_pk": {"S": self.open_manifests_partition(manifest.day)},
                "work_sk": {"S": f"{iso(lease_expires)}#{manifest.manifest_id}"},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    # ------------------------------------------------------------- manifests

    def get_manifest(self, manifest_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": manifest_pk(manifest_id)}, "sk": {"S": "MANIFEST"}},
            ConsistentRead=True,
        )
        return _plain(item["Item"]) if "Item" in item else None

    def extend_lease(self, manifest_id: str, lease_seconds: int) -> None:
        """Push an open manifest's lease forward while its job is known to be running."""
        now = utcnow()
        lease = iso(now + timedelta(seconds=lease_seconds))
        record = self._require_manifest(manifest_id)
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": manifest_pk(manifest_id)}, "sk": {"S": "MANIFEST"}},
                UpdateExpression="SET lease_expires_at = :lease, work_sk = :wsk",
                ConditionExpression="#s = :claimed",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":lease": {"S": lease},
                    ":wsk": {"S": f"{lease}#{manifest_id}"},
                    ":claimed": {"S": ManifestState.CLAIMED},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise IllegalTransitionError(f"manifest {manifest_id}", record["state"], "lease extension") from exc

    def expired_manifests(self, day: str, now: datetime | None = None) -> list[str]:
        """Open manifests of a day whose lease has run out: their claims need compensation."""
        upper = iso(now or utcnow()) + "#~"
        return [item["manifest_id"] for item in self._query_pages(self.open_manifests_partition(day), 100, upper)]

    def open_manifests(self, day: str) -> list[str]:
        return [item["manifest_id"] for item in self._query_pages(self.open_manifests_partition(day), 100)]

    def manifest_of(self, record: dict[str, Any]) -> Manifest:
        """Rebuild the manifest a ledger record describes (for a retry that lost its S3 write)."""
        items = self.get_files(sorted(record["files"]))
        missing = set(record["files"]) - set(items)
        if missing:
            raise LedgerError(f"manifest {record['manifest_id']}: files {sorted(missing)[:3]} have no ledger record")
        files = [_file_version(item) for item in items.values()]
        manifest = Manifest.for_files(record["day"], files, int(record.get("generation", 0)))
        if manifest.manifest_id != record["manifest_id"]:
            raise LedgerError(f"manifest {record['manifest_id']} does not match its files ({manifest.manifest_id})")
        return manifest

    def _require_manifest(self, manifest_id: str) -> dict[str, Any]:
        record = self.get_manifest(manifest_id)
        if record is None:
            raise LedgerError(f"manifest {manifest_id} has no ledger record")
        return record

    def complete_manifest(self, manifest_id: str, outcomes: list[FileResult] | tuple[FileResult, ...]) -> None:
        """Move a manifest's files to DONE/QUARANTINED and close the manifest, idempotently.

        Files already in the wanted terminal state for this manifest are skipped,
        so a retried finaliser converges; any other state is an illegal transition.
        """
        record = self._require_manifest(manifest_id)
        if record["state"] == ManifestState.SUCCEEDED:
            return
        if record["state"] != ManifestState.CLAIMED:
            raise IllegalTransitionError(f"manifest {manifest_id}", record["state"], ManifestState.SUCCEEDED)
        expected = set(record["files"])
        given = {o.identity for o in outcomes}
        if given != expected:
            raise LedgerError(
                f"manifest {manifest_id}: outcomes cover {len(given)} files but the manifest holds {len(expected)} "
                f"(missing {sorted(expected - given)[:3]}, unexpected {sorted(given - expected)[:3]})"
            )
        now = utcnow()
        for outcome in outcomes:
            self._finish_file(manifest_id, outcome, now)
        self._close_manifest(manifest_id, ManifestState.SUCCEEDED, now)

    def _finish_file(self, manifest_id: str, outcome: FileResult, now: datetime) -> None:
        if outcome.outcome not in JOB_OUTCOMES:
            raise IllegalTransitionError(f"file {outcome.identity}", FileState.CLAIMED, outcome.outcome)
        names = {"#s": "state", "#ttl": self.ttl_attribute}
        values = {
            ":to": {"S": outcome.outcome},
            ":claimed": {"S": FileState.CLAIMED},
            ":m": {"S": manifest_id},
            ":now": {"S": iso(now)},
            ":ttl": {"N": str(self._expires_at(now))},
            ":rin": {"N": str(outcome.rows_in)},
            ":rout": {"N": str(outcome.rows_out)},
            ":rq": {"N": str(outcome.rows_quarantined)},
            ":rr": {"N": str(outcome.rows_rescued)},
        }
        update = (
            "SET #s = :to, updated_at = :now, finished_at = :now, #ttl = :ttl, "
            "rows_in = :rin, rows_out = :rout, rows_quarantined = :rq, rows_rescued = :rr"
        )
        if outcome.reason:
            update += ", reason = :reason"
            values[":reason"] = {"S": outcome.reason}
        update += " REMOVE lease_expires_at"
        self._conditional_file_update(
            outcome.identity,
            update,
            "#s = :claimed AND manifest_id = :m",
            names,
            values,
            wanted=outcome.outcome,
            already_done=lambda item: item.get("state") == outcome.outcome and item.get("manifest_id") == manifest_id,
        )

    def compensate_manifest(self, manifest_id: str, *, max_attempts: int, reason: str) -> list[str]:
        """Return a failed manifest's claimed files to PENDING, or FAILED once attempts run out.

        Conditional on the manifest's recorded state: a SUCCEEDED manifest is never
        reset, and a second compensation of the same manifest changes nothing.
        Returns the identities that became FAILED (they need an alert).
        """
        record = self._require_manifest(manifest_id)
        if record["state"] == ManifestState.COMPENSATED:
            return []
        if record["state"] != ManifestState.CLAIMED:
            raise IllegalTransitionError(f"manifest {manifest_id}", record["state"], ManifestState.COMPENSATED)
        now = utcnow()
        failed = []
        for identity in sorted(record["files"]):
            if self._release_file(identity, manifest_id, record["day"], max_attempts, reason, now):
                failed.append(identity)
        self._close_manifest(manifest_id, ManifestState.COMPENSATED, now, reason)
        if failed:
            log.error(
                "manifest %s: %d files FAILED after %d attempts: %s",
                manifest_id,
                len(failed),
                max_attempts,
                failed[:5],
            )
        return failed

    def _release_file(
        self, identity: str, manifest_id: str, day: str, max_attempts: int, reason: str, now: datetime
    ) -> bool:
        item = self.get_file(identity)
        if item is None:
            raise LedgerError(f"file {identity} of manifest {manifest_id} has no ledger record")
        if item.get("manifest_id") != manifest_id or item["state"] != FileState.CLAIMED:
            # Already released by an earlier compensation of this manifest, or finished.
            return False
        attempts = int(item.get("attempts", 0)) + 1
        names = {"#s": "state"}
        values: dict[str, Any] = {
            ":claimed": {"S": FileState.CLAIMED},
            ":m": {"S": manifest_id},
            ":now": {"S": iso(now)},
            ":attempts": {"N": str(attempts)},
            ":reason": {"S": reason},
        }
        if attempts >= max_attempts:
            names["#ttl"] = self.ttl_attribute
            values[":to"] = {"S": FileState.FAILED}
            values[":ttl"] = {"N": str(self._expires_at(now))}
            update = "SET #s = :to, attempts = :attempts, reason = :reason, updated_at = :now, #ttl = :ttl"
        else:
            values[":to"] = {"S": FileState.PENDING}
            values[":wpk"] = {"S": self.pending_partition(day, self._shard(identity))}
            values[":wsk"] = {"S": f"{iso(now)}#{identity}"}
            update = (
                "SET #s = :to, attempts = :attempts, reason = :reason, updated_at = :now, "
                "work_pk = :wpk, work_sk = :wsk"
            )
        update += " REMOVE lease_expires_at, manifest_id"
        self._conditional_file_update(
            identity,
            update,
            "#s = :claimed AND manifest_id = :m",
            names,
            values,
            wanted=values[":to"]["S"],
            already_done=lambda found: found.get("manifest_id") != manifest_id,
        )
        return attempts >= max_attempts

    def requeue_failed(self, identity: str) -> None:
        """An operator's decision to try a FAILED file again, with a fresh attempt count."""
        item = self.get_file(identity)
        if item is None:
            raise LedgerError(f"file {identity} has no ledger record")
        now = utcnow()
        self._conditional_file_update(
            identity,
            "SET #s = :to, attempts = :zero, updated_at = :now, work_pk = :wpk, work_sk = :wsk REMOVE #ttl, reason",
            "#s = :failed",
            {"#s": "state", "#ttl": self.ttl_attribute},
            {
                ":to": {"S": FileState.PENDING},
                ":failed": {"S": FileState.FAILED},
                ":zero": {"N": "0"},
                ":now": {"S": iso(now)},
                ":wpk": {"S": self.pending_partition(item["day"], self._shard(identity))},
                ":wsk": {"S": f"{iso(now)}#{identity}"},
            },
            wanted=FileState.PENDING,
            already_done=lambda found: False,
        )

    def _conditional_file_update(
        self,
        identity: str,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        *,
        wanted: str,
        already_done,
    ) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_typed(file_key(identity)),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            current = _plain(exc.response.get("Item", {}))
            if current and already_done(current):
                return
            raise IllegalTransitionError(f"file {identity}", current.get("state"), wanted) from exc

    def _close_manifest(self, manifest_id: str, state: ManifestState, now: datetime, reason: str | None = None) -> None:
        values = {
            ":to": {"S": state},
            ":claimed": {"S": ManifestState.CLAIMED},
            ":now": {"S": iso(now)},
            ":ttl": {"N": str(self._expires_at(now))},
        }
        update = "SET #s = :to, closed_at = :now, #ttl = :ttl"
        if reason:
            update += ", reason = :reason"
            values[":reason"] = {"S": reason}
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": manifest_pk(manifest_id)}, "sk": {"S": "MANIFEST"}},
                UpdateExpression=update + " REMOVE work_pk, work_sk",
                ConditionExpression="#s = :claimed",
                ExpressionAttributeNames={"#s": "state", "#ttl": self.ttl_attribute},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            current = _plain(exc.response.get("Item", {})).get("state")
            if current != state:
                raise IllegalTransitionError(f"manifest {manifest_id}", current, state) from exc


class PendingSummaryScan:
    """Counts a day's pending work page by page and stops as soon as either threshold is met.

    Split into ``next_request``/``add_page`` so the same logic drives the sync
    ledger and the triggerer's async client. Each shard is read oldest first, so
    the first item of each shard gives the oldest pending arrival.
    """

    def __init__(self, ledger: Ledger, day: str, *, enough_files: int, enough_bytes: int, page_size: int = 500):
        self.table = ledger.table
        self.index = ledger.index
        self.shards = ledger.pending_shards
        self.day = day
        self.enough_files = enough_files
        self.enough_bytes = enough_bytes
        self.page_size = page_size
        self.files = 0
        self.bytes = 0
        self.oldest: str | None = None
        self._shard = 0
        self._start_key: dict | None = None

    def enough(self) -> bool:
        return self.files >= self.enough_files or self.bytes >= self.enough_bytes

    def next_request(self) -> dict[str, Any] | None:
        if self._shard >= self.shards or self.enough():
            return None
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.index,
            "KeyConditionExpression": "work_pk = :p",
            "ExpressionAttributeValues": {":p": {"S": Ledger.pending_partition(self.day, self._shard)}},
            "ProjectionExpression": "#size, work_sk",
            "ExpressionAttributeNames": {"#size": "size"},
            "Limit": self.page_size,
        }
        if self._start_key:
            request["ExclusiveStartKey"] = self._start_key
        return request

    def add_page(self, page: dict[str, Any]) -> None:
        items = page.get("Items", [])
        if items and self._start_key is None:
            registered_at = items[0]["work_sk"]["S"].split("#", 1)[0]
            self.oldest = registered_at if self.oldest is None else min(self.oldest, registered_at)
        for item in items:
            self.files += 1
            self.bytes += int(item["size"]["N"])
        self._start_key = page.get("LastEvaluatedKey")
        if not self._start_key:
            self._shard += 1

    def result(self) -> PendingSummary:
        return PendingSummary(
            day=self.day,
            files=self.files,
            bytes=self.bytes,
            oldest_registered_at=self.oldest,
            exhaustive=self._shard >= self.shards,
        )


def _file_version(item: dict[str, Any]) -> FileVersion:
    return FileVersion(
        bucket=item["bucket"],
        key=item["key"],
        etag=item["etag"],
        size=int(item["size"]),
        version_id=item.get("version_id"),
    )


def _chunks_by_actions(regs: list[Registration], cost) -> Iterator[list[Registration]]:
    chunk: list[Registration] = []
    used = 0
    for reg in regs:
        need = cost(reg)
        if chunk and used + need > TRANSACTION_LIMIT:
            yield chunk
            chunk, used = [], 0
        chunk.append(reg)
        used += need
    if chunk:
        yield chunk


def _cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        raise exc
    reasons = exc.response.get("CancellationReasons")
    if not reasons:
        raise LedgerError("transaction cancelled without cancellation reasons") from exc
    return reasons


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))  # noqa: S311


def _typed(plain: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"S": v} for k, v in plain.items()}


def _attr(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return next(iter(value.values())) if value else None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed JSON to plain values (S, N as str/int, SS as set)."""
    out: dict[str, Any] = {}
    for name, typed in item.items():
        ((kind, value),) = typed.items()
        if kind == "N":
            out[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        elif kind == "SS":
            out[name] = set(value)
        else:
            out[name] = value
    return out

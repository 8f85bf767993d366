"""The ledger's one entry point: reads and the state machine's operations on one table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ndjson_pipeline.clock import iso, utcnow
from ndjson_pipeline.files import FileId, FileState, FileVersion
from ndjson_pipeline.ledger import claims, days, maintenance, redo, registration, transitions, wakes
from ndjson_pipeline.ledger.claims import Batch
from ndjson_pipeline.ledger.days import DayState
from ndjson_pipeline.ledger.records import FileRecord, GroupState, ManifestRecord
from ndjson_pipeline.ledger.registration import GroupLimits, RegisterOutcome, Registration
from ndjson_pipeline.ledger.schema import alerts_partition, open_manifests_partition, table_schema, up_to
from ndjson_pipeline.ledger.table import LedgerTable
from ndjson_pipeline.ledger.work import PendingSummary, PendingSummaryScan, WorkIndex
from ndjson_pipeline.manifest import FileResult, Manifest
from ndjson_pipeline.settings import PipelineSettings


class Ledger:
    """Conditional, batched access to the ledger table through a boto3 DynamoDB client.

    :param client: a boto3 ``dynamodb`` client (from the ledger hook in Airflow tasks).
    :param table: the ledger table name.
    :param terminal_ttl_days: days a terminal item is kept before DynamoDB expires it.
    :param group_limits: how many files and bytes a registration group may hold (a claim takes whole groups, so
        no group may exceed a manifest); ``for_settings`` takes them from the manifest limits.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        terminal_ttl_days: int = 30,
        group_limits: GroupLimits = registration.UNLIMITED,
    ) -> None:
        self._table = LedgerTable(client, table, table_schema(), terminal_ttl_days)
        self._group_limits = group_limits

    @classmethod
    def for_settings(cls, client: Any, settings: PipelineSettings) -> Ledger:
        """The deployment's ledger: its table, its records' lifetime, and groups no larger than a manifest."""
        limits = GroupLimits(max_files=settings.max_files_per_manifest, max_bytes=settings.max_bytes_per_manifest)
        return cls(
            client, settings.names.ledger_table, terminal_ttl_days=settings.terminal_ttl_days, group_limits=limits
        )

    @property
    def table_name(self) -> str:
        return self._table.name

    @property
    def work_index(self) -> WorkIndex:
        return self._table.work_index

    # ------------------------------------------------------------------ files

    def register(self, registrations: Iterable[Registration]) -> RegisterOutcome:
        """Record file versions idempotently, in groups within the ledger's group limits (``registration``)."""
        return registration.register(self._table, registrations, self._group_limits)

    def get_file(self, identity: str) -> FileRecord | None:
        return self._table.file(FileId.parse(identity))

    def get_files(self, identities: Sequence[str]) -> dict[str, FileRecord]:
        """Records of many file versions by identity (absent ones are left out), with their groups' state.

        Eventually consistent, as reports and selections need: every write re-reads what it changes."""
        return self._table.files(identities)

    def get_states(self, identities: Sequence[str]) -> dict[str, FileState]:
        """States of many file versions (absent ones are left out)."""
        return {identity: record.state for identity, record in self._table.files(identities).items()}

    def identities_of(self, record: ManifestRecord) -> list[str]:
        """The file versions a manifest's groups hold, sorted (a closed manifest's requeued files are left out)."""
        held = self._table.groups_of(record, all_held=False)
        return sorted(identity for group in held for identity in group.identities)

    def requeue_failed(self, identity: str) -> None:
        """An operator's decision to try a FAILED file again, with a fresh attempt count."""
        transitions.requeue_failed(self._table, identity)

    def replay_quarantined(self, identity: str, *, still_in_s3: bool = False) -> None:
        """An operator's decision to convert again a file a conversion quarantined whole (see ``maintenance``)."""
        maintenance.replay_quarantined(self._table, identity, still_in_s3=still_in_s3)

    # ------------------------------------------------------------------ open days

    def open_days(self) -> list[str]:
        """Every day with open work (pending files, open manifests, alerts to publish), newest first."""
        return days.open_days(self._table)

    def has_open_work(self, day: str) -> bool:
        """Whether the day has pending files, open manifests or alerts to publish (the work index, as it is now)."""
        return days.has_open_work(self._table, day)

    def close_day_if_idle(self, day: str, *, now: datetime | None = None) -> DayState:
        """One pass of closing a day without work (two quiet passes close it; see ``ledger.days``)."""
        return days.close_if_idle(self._table, day, now or utcnow())

    # ------------------------------------------------------------------ pending work

    def iter_pending(self, day: str, *, page_size: int = 100, start_shard: int = 0) -> Iterator[FileVersion]:
        """Pending file versions of a day, oldest first within each shard, one bounded page at a time.

        The index is eventually consistent: a yielded file may already be claimed;
        claims are conditional, so that costs a retry, never a double claim.
        """
        for item in self._table.pending_items(day, page_size, start_shard):
            group = self._table.group(str(item["group_id"]))
            if group is not None and group.state is GroupState.PENDING:
                yield from group.files

    def pending_summary(self, day: str, *, enough_files: int, enough_bytes: int) -> PendingSummary:
        """Pending files and bytes of a day, counted only until either threshold is reached."""
        scan = PendingSummaryScan(self.work_index, day, enough_files=enough_files, enough_bytes=enough_bytes)
        while (request := scan.next_request()) is not None:
            scan.add_page(self._table.client.query(**request))
        return scan.result()

    def claim_batch(
        self,
        day: str,
        *,
        max_files: int,
        max_bytes: int,
        lease_seconds: int,
        owner: str = "",
        start_shard: int | None = None,
        batch: Batch | None = None,
    ) -> Manifest | None:
        """Atomically claim up to ``max_files``/``max_bytes`` pending files of a day for one manifest.

        ``batch``: claim fewer files than the limits allow only when they make a batch; None claims whatever is
        pending (see ``claims.claim_batch``).
        """
        return claims.claim_batch(
            self._table,
            day,
            max_files=max_files,
            max_bytes=max_bytes,
            lease_seconds=lease_seconds,
            owner=owner,
            start_shard=start_shard,
            batch=batch,
        )

    def release_wake(self, day: str, run: str) -> bool:
        """``run`` planned the batch that woke it: the day's next batch may wake a run (see ``wakes``); whether
        ``run`` held the wake."""
        return wakes.release(self._table.client, self.work_index, day, run, utcnow())

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, manifest_id: str) -> ManifestRecord | None:
        return self._table.manifest(manifest_id)

    def open_manifests(self, day: str) -> list[str]:
        return list(self.open_manifest_owners(day))

    def open_manifest_owners(self, day: str) -> dict[str, str]:
        """manifest id -> owner of the open manifests of a day, as the index shows them (eventually consistent:
        read one to be sure). The index holds no file lists (resources.json ``projected_attributes``)."""
        return {str(i["manifest_id"]): str(i["owner"]) for i in self._table.query(open_manifests_partition(day), 100)}

    def expired_manifests(self, day: str, now: datetime | None = None) -> list[str]:
        """Open manifests of a day whose lease has run out: their claims need compensation."""
        upper = up_to(iso(now or utcnow()))
        return [str(item["manifest_id"]) for item in self._table.query(open_manifests_partition(day), 100, upper)]

    def extend_lease(self, manifest_id: str, lease_seconds: int) -> None:
        """Push an open manifest's lease forward while its job is known to be running (refused once fenced)."""
        claims.extend_lease(self._table, manifest_id, lease_seconds)

    def attach_run(self, manifest_id: str, run_id: str) -> bool:
        """Record the run converting an open manifest; False when a compensation began or it closed meanwhile."""
        return claims.attach_run(self._table, manifest_id, run_id)

    def mark_failure_alerted(self, manifest_id: str) -> None:
        claims.mark_failure_alerted(self._table, manifest_id)

    def fence_manifest(self, manifest_id: str, *, lease_expired_at: datetime | None = None) -> bool:
        """The first step of a compensation: no run may start or be adopted any more; False if refused."""
        return transitions.fence_manifest(self._table, manifest_id, lease_expired_at=lease_expired_at)

    def manifest_of(self, record: ManifestRecord) -> Manifest:
        """Rebuild the manifest a ledger record describes (for a retry that lost its S3 write)."""
        held = self._table.groups_of(record)
        ordered = tuple(sorted((f for group in held for f in group.files), key=lambda f: f.identity))
        return Manifest(record.manifest_id, record.day, ordered, record.generation)

    def complete_manifest(self, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
        """Move a manifest's files to DONE/QUARANTINED and close the manifest, idempotently."""
        transitions.complete_manifest(self._table, manifest_id, outcomes)

    def restate_files(self, manifest_id: str, outcomes: Sequence[FileResult]) -> None:
        """Replace the outcomes of files a SUCCEEDED manifest made DONE with a reprocess's (see ``transitions``)."""
        transitions.restate_files(self._table, manifest_id, outcomes)

    def compensate_manifest(self, manifest_id: str, *, max_attempts: int, reason: str) -> list[str]:
        """Return a failed manifest's files to PENDING (FAILED after ``max_attempts``); the FAILED identities."""
        return transitions.compensate_manifest(self._table, manifest_id, max_attempts=max_attempts, reason=reason)

    def redo_compensated(self, manifest_id: str, *, lease_seconds: int) -> str | None:
        """Claim a compensated manifest's files that no other manifest holds into its successor (see ``redo``)."""
        return redo.redo_compensated(self._table, manifest_id, lease_seconds=lease_seconds)

    def successor_of(self, manifest_id: str) -> str | None:
        """The manifest that redoes a compensated one, once a redo linked it."""
        return redo.successor_of(self._table, manifest_id)

    # ------------------------------------------------------------------ alerts

    def pending_alerts_of(self, manifest_id: str) -> list[str]:
        """The file versions this manifest's compensation FAILED whose alert is not published yet."""
        record = self._table.require_manifest(manifest_id)
        held = self._table.groups_of(record, all_held=False)
        return sorted(i for g in held if g.alert_pending == manifest_id for i in g.identities)

    def pending_alerts(self, day: str) -> dict[str, list[str]]:
        """A day's FAILED versions whose alert is not published yet, by the manifest that failed them."""
        by_manifest: dict[str, list[str]] = {}
        slots = list(self._table.query(alerts_partition(day), 100))
        for group in self._table.groups(str(item["group_id"]) for item in slots).values():
            if group.alert_pending:
                by_manifest.setdefault(group.alert_pending, []).extend(group.identities)
        return {m: sorted(identities) for m, identities in by_manifest.items()}

    def clear_alerts(self, manifest_id: str, identities: Sequence[str]) -> None:
        """The alert for these FAILED versions was published: their groups (the manifest's) leave the alert index."""
        record = self._table.manifest(manifest_id)
        published = set(identities)
        for group in self._table.groups_of(record, all_held=False) if record else []:
            if group.alert_pending == manifest_id and published.intersection(group.identities):
                transitions.clear_alert(self._table, group, manifest_id)

"""Reprocessing: rebuild a day's Parquet from its raw files after a fix, then swap it in whole for readers.

A reprocess of a day converts again the files each SUCCEEDED manifest of the day
made DONE, under the same manifest ids, into its own layout
(``LakeLayout.rebuild``), so nothing a reader sees changes while it converts.
Files quarantined whole are left out (``replay_quarantined`` returns those to
the pipeline), and no other action moves a DONE file, so no one else converts
these files meanwhile. Lines quarantined inside converted files are read again
from the raw files: a fixed schema or read mode turns them into rows.

The swap of a day, once every rebuilt manifest has its result:

1. every result must reconcile, and no file the day converted may be
   quarantined whole by the rebuild (its raw version gone or unreadable, a
   lowered limit): refused, and nothing is changed;
2. the files other manifests have in the day's partitions (late files) are
   copied into the rebuilt partitions, each catalog partition is pointed at its
   rebuilt copy (readers move from the old day to the new one in one catalog
   update), and what was published meanwhile is copied too;
3. after ``reprocess_grace_seconds`` (queries planned on the old files end),
   each rebuilt manifest's Parquet, quarantined lines, publish log and result
   in the lake are replaced by the rebuilt ones (names derive from the manifest
   id, so nothing of another manifest is touched);
4. the files' row counts are restated in the ledger;
5. the partitions point back at the lake, and after the grace again the
   record is written and the reprocess's layout removed.

A manifest of the day that finishes during 3-5 is visible from 5 on: delayed,
never mixed in. Every step is safe to repeat, so a failed swap is retried from
the start (a swap that failed after 2 leaves readers on the rebuilt copy, the
new day, until its retry); once the record exists a retry only removes what is
left. Steps 2, 3 and 5 are ``swapping.switch_partitions``, which a compaction's swap
(``compacting``) goes through too.

A compacted day holds files that merge several manifests' rows (each result
lists them with its own rows): a reprocess rebuilds every manifest whose rows
share such a file with one it rebuilds, and the swap replaces the shared files
with the rebuilt manifests' own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from ndjson_pipeline.catalog import DatasetCatalog, DatasetTable
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.conversion import RunKind
from ndjson_pipeline.files import FileId, FileState
from ndjson_pipeline.landing import day_listing_pages
from ndjson_pipeline.layout import LakeLayout
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef
from ndjson_pipeline.settings import PipelineSettings, RunPurpose
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.maintenance import read_records
from ndjson_pipeline.steps.reconcile import check_day_can_be_closed
from ndjson_pipeline.steps.swapping import (
    day_results,
    keep_replaced,
    remove_work,
    replace_manifest_output,
    replaced_result,
    switch_partitions,
    work_results,
)
from ndjson_pipeline.storage import Storage

log = logging.getLogger(__name__)

ACTION = "reprocess_day"
COMPACTED = "compact_day"  # the action of a compaction's record (``compacting``)


def rebuild_id_for(requested_by: str, day: str) -> str:
    """The id of one day's rebuild, from the run that asked: every try and clear of that run uses the same layout.

    One layout per day: a day's swap removes its own, and under event-time
    partitioning two days of a range may write into the same partition.
    """
    return hashlib.sha256(f"{requested_by}/{day}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RebuildRef:
    """What the planning task passes to a rebuild run: one manifest of the day, in one reprocess or compaction.

    ``kind``: ``rebuild`` converts the manifest's landing files again into the reprocess's layout; ``compact``
    merges the Parquet files the manifest lists into the compaction's layout.
    """

    manifest: ManifestRef
    rebuild_id: str
    kind: RunKind = RunKind.REBUILD

    def work_layout(self, lake: LakeLayout) -> LakeLayout:
        """Where the run reads its manifest and writes: the reprocess's or the compaction's layout of ``lake``."""
        return lake.compaction(self.rebuild_id) if self.kind is RunKind.COMPACT else lake.rebuild(self.rebuild_id)

    @property
    def purpose(self) -> RunPurpose:
        """Why the run runs, which decides its Glue execution class."""
        return RunPurpose.COMPACTION if self.kind is RunKind.COMPACT else RunPurpose.REPROCESS

    def as_dict(self) -> dict[str, Any]:
        """The manifest reference's fields, ``rebuild_id`` and ``kind``, flat (the task reads ``manifest_id``)."""
        return {**self.manifest.as_dict(), "rebuild_id": self.rebuild_id, "kind": str(self.kind)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RebuildRef:
        fields = dict(raw)
        rebuild_id = str(fields.pop("rebuild_id"))
        kind = RunKind(fields.pop("kind", RunKind.REBUILD))
        return cls(ManifestRef.from_dict(fields), rebuild_id, kind)


@dataclass(frozen=True)
class ReprocessPlan:
    """A day's manifests to rebuild (in a dry run: what a real run would rebuild)."""

    day: str
    rebuild_id: str
    manifests: list[RebuildRef]
    files: int
    rows_out: int  # the day's rows the lake holds now, to be replaced
    rows_quarantined: int  # the lines quarantined now, read again

    def summary(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "rebuild_id": self.rebuild_id,
            "manifests": len(self.manifests),
            "files": self.files,
            "rows_out": self.rows_out,
            "rows_quarantined": self.rows_quarantined,
        }


@dataclass(frozen=True)
class ReprocessRecord:
    """What one reprocess did to a day, written under the day and listed by the day report."""

    action: str
    day: str
    rebuild_id: str
    requested_by: str
    requested_at: str
    triggered_by: str | None
    manifests: int
    files: int
    files_changed: int  # files whose rows (out, quarantined or rescued) differ from before
    rows_out_before: int
    rows_out_after: int
    rows_quarantined_before: int
    rows_quarantined_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_reprocess(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    day: str,
    *,
    requested_by: str,
    dry_run: bool,
    today: date | None = None,
) -> ReprocessPlan:
    """The day's SUCCEEDED manifests and their DONE files; unless ``dry_run``, their rebuild manifests written.

    Refuses a day whose raw files may have expired, and a day with a manifest
    whose files are DONE but which is not closed yet (a finaliser stopped half
    way: the sweeper closes it; reprocess after that).
    """
    check_day_can_be_closed(day, settings, today)
    rebuild_id = rebuild_id_for(requested_by, day)
    if swap_record(storage, settings, day, requested_by) is not None:
        log.info(
            "day %s was swapped in by %s already: nothing to rebuild",
            day,
            requested_by,
            extra={"day": day, "requested_by": requested_by},
        )
        return ReprocessPlan(day, rebuild_id, [], 0, 0, 0)
    rebuild = settings.layout.rebuild(rebuild_id)
    manifest_ids: set[str] = set()
    rows: Counter[str] = Counter()
    bucket = settings.names.landing_bucket
    for objects in day_listing_pages(storage.s3, bucket, day, settings):
        identities = [str(FileId.from_listing(bucket, obj)) for obj in objects]
        for file in ledger.get_files(identities).values():
            if file.state is FileState.DONE and file.manifest_id:
                manifest_ids.add(file.manifest_id)
    if any(record.get("action") == COMPACTED for record in read_records(storage, settings, day)):
        manifest_ids = sharing_files(day_results(storage, settings.layout, day), manifest_ids)
    refs: list[RebuildRef] = []
    for manifest_id in sorted(manifest_ids):
        record = ledger.get_manifest(manifest_id)
        if record is None or record.state is not ManifestState.SUCCEEDED:
            state = record.state if record else "missing"
            raise PipelineError(
                f"manifest {manifest_id} of day {day} is {state}, not SUCCEEDED; reprocess it once closed"
            )
        # Every DONE file of the manifest, from its record: a raw file missing from the listing must not be dropped.
        done = [
            f
            for f in ledger.get_files(ledger.identities_of(record)).values()
            if f.state is FileState.DONE and f.manifest_id == manifest_id
        ]
        for f in done:
            rows["files"] += 1
            rows["out"] += f.rows_out
            rows["quarantined"] += f.rows_quarantined
        manifest = Manifest(
            manifest_id, day, tuple(sorted((f.file for f in done), key=lambda f: f.identity)), record.generation
        )
        if not dry_run:
            storage.write_bytes(rebuild.manifest_uri(day, manifest_id), manifest.to_json().encode())
        refs.append(RebuildRef(ManifestRef.of(manifest), rebuild_id))
    plan = ReprocessPlan(day, rebuild_id, refs, rows["files"], rows["out"], rows["quarantined"])
    log.info(
        "%sreprocess of %s: %s",
        "dry run: " if dry_run else "",
        day,
        json.dumps(plan.summary()),
        extra={**plan.summary(), "dry_run": dry_run},
    )
    return plan


def swap_record(storage: Storage, settings: PipelineSettings, day: str, requested_by: str) -> ReprocessRecord | None:
    """The record of the day's swap by this run, once it is done (None before)."""
    body = storage.read_bytes_if_exists(settings.layout.maintenance_uri(day, f"{ACTION}-{requested_by}"))
    return None if body is None else ReprocessRecord(**json.loads(body))


def swap_day(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    catalog: DatasetTable | None,
    day: str,
    *,
    requested_by: str,
    triggered_by: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReprocessRecord:
    """Put the day's rebuilt manifests in place of the old ones (steps 1-5 of the module doc); return the record.

    Between pointing readers at the rebuilt copy and changing the lake's files,
    and between pointing them back and removing the copy, it waits
    ``reprocess_grace_seconds`` (``sleep``), so queries planned on the files
    about to change finish first. An Iceberg table swaps by one commit instead
    (``iceberg_reprocess``).
    """
    if catalog is not None and catalog.commits_manifests:
        from ndjson_pipeline.steps.iceberg_reprocess import swap_day_by_commit

        return swap_day_by_commit(
            ledger, storage, settings, catalog, day, requested_by=requested_by, triggered_by=triggered_by
        )
    hive = catalog if isinstance(catalog, DatasetCatalog) else None
    lake = settings.layout
    rebuild_id = rebuild_id_for(requested_by, day)
    rebuild = lake.rebuild(rebuild_id)
    done = swap_record(storage, settings, day, requested_by)
    if done is not None:
        remove_work(storage, rebuild)
        return done
    rebuilt, old = checked_rebuild(storage, lake, rebuild, day)
    names = tuple(f"part-{manifest_id}-" for manifest_id in rebuilt)
    # Files of the old results: a compacted file holds rebuilt manifests' rows under another manifest's name.
    old_paths = {o.path for result in old.values() for o in result.output_files}
    dts = {dt for result in [*rebuilt.values(), *old.values()] for dt in _dts(result)}
    newest = max(rebuilt.values(), key=lambda r: r.schema_version or 0)

    def replace_in_lake() -> None:
        for manifest_id, result in rebuilt.items():
            replace_manifest_output(storage, lake, rebuild, day, manifest_id, result, old[manifest_id], dts)
            ledger.restate_files(manifest_id, result.files)

    switch_partitions(
        storage,
        settings,
        hive,
        rebuild,
        dts,
        replaced=lambda uri: uri in old_paths or uri.rsplit("/", 1)[-1].startswith(names),
        described_by=newest,
        replace_in_lake=replace_in_lake,
        sleep=sleep,
    )
    record = finish_swap(storage, settings, day, requested_by, triggered_by, rebuilt, old)
    remove_work(storage, rebuild)
    return record


def finish_swap(
    storage: Storage,
    settings: PipelineSettings,
    day: str,
    requested_by: str,
    triggered_by: str | None,
    rebuilt: dict[str, JobResult],
    old: dict[str, JobResult],
) -> ReprocessRecord:
    """The swap's last steps, whatever the table format: the reprocess's usage counted for the day, its record."""
    lake = settings.layout
    rebuild_id = rebuild_id_for(requested_by, day)
    rebuild = lake.rebuild(rebuild_id)
    for uri in storage.list(rebuild.usage_prefix(day)):
        storage.copy(uri, rebuild.moved_to(uri, lake))  # the reprocess's own cost counts for the day
    record = ReprocessRecord(
        action=ACTION,
        day=day,
        rebuild_id=rebuild_id,
        requested_by=requested_by,
        requested_at=utcnow().isoformat(),
        triggered_by=triggered_by,
        manifests=len(rebuilt),
        files=sum(len(r.files) for r in rebuilt.values()),
        files_changed=sum(_changed_files(old[m], rebuilt[m]) for m in rebuilt),
        rows_out_before=sum(_done_rows(old[m], rebuilt[m], "rows_out") for m in rebuilt),
        rows_out_after=sum(r.rows_out for r in rebuilt.values()),
        rows_quarantined_before=sum(_done_rows(old[m], rebuilt[m], "rows_quarantined") for m in rebuilt),
        rows_quarantined_after=sum(r.rows_quarantined for r in rebuilt.values()),
    )
    storage.write_bytes(
        lake.maintenance_uri(day, f"{ACTION}-{requested_by}"),
        json.dumps(record.as_dict(), indent=2, sort_keys=True).encode(),
    )
    log.info(
        "reprocess of %s swapped in: %s",
        day,
        json.dumps(record.as_dict()),
        extra={"day": day, "reprocess": record.as_dict()},
    )
    return record


def sharing_files(results: dict[str, JobResult], manifest_ids: set[str]) -> set[str]:
    """``manifest_ids`` and every manifest whose rows share a file with theirs, however indirectly."""
    holders: dict[str, set[str]] = {}
    for manifest_id, result in results.items():
        for output in result.output_files:
            holders.setdefault(output.path, set()).add(manifest_id)
    found, todo = set(manifest_ids), list(manifest_ids)
    while todo:
        outputs = results[manifest_id].output_files if (manifest_id := todo.pop()) in results else ()
        for output in outputs:
            for other in holders[output.path] - found:
                found.add(other)
                todo.append(other)
    return found


def checked_rebuild(
    storage: Storage, lake: LakeLayout, rebuild: LakeLayout, day: str
) -> tuple[dict[str, JobResult], dict[str, JobResult]]:
    """Step 1 of the module doc, whatever the table format: the rebuilt results and the lake's results they replace.

    Every rebuilt manifest must have a result that reconciles and drops no file
    the day converted; the replaced results are kept aside before anything changes.
    """
    rebuilt = work_results(storage, rebuild, day)
    old = {m: replaced_result(storage, lake, rebuild, day, m) for m in rebuilt}
    _check_nothing_lost(day, rebuilt)
    keep_replaced(storage, rebuild, day, old)
    return rebuilt, old


def _check_nothing_lost(day: str, rebuilt: dict[str, JobResult]) -> None:
    """Refuse a rebuild that quarantined a whole file the day had converted: its rows would leave the lake.

    Its raw version may be gone ("superseded") or unreadable now, or a limit
    may have been lowered: whatever the cause, a reprocess never drops a file.
    """
    dropped = [
        f"{f.uri} ({f.reason})"
        for result in rebuilt.values()
        for f in result.files
        if f.outcome is FileState.QUARANTINED
    ]
    if dropped:
        raise PipelineError(
            f"day {day}: the rebuild quarantined {len(dropped)} whole files the day had converted, so the rebuilt "
            f"day would lose their rows; nothing was swapped: {dropped[:3]}"
        )


def _changed_files(old: JobResult, rebuilt: JobResult) -> int:
    """How many of the rebuilt files now count other rows (out, quarantined or rescued) than before."""
    before = {f.identity: (f.rows_out, f.rows_quarantined, f.rows_rescued) for f in old.files}
    return sum(before.get(f.identity) != (f.rows_out, f.rows_quarantined, f.rows_rescued) for f in rebuilt.files)


def _dts(result: JobResult) -> set[str]:
    return {dt for f in result.output_files if (dt := LakeLayout.dt_of(f.path))}


def _done_rows(old: JobResult, rebuilt: JobResult, name: str) -> int:
    """A count over the old result's files that the reprocess rebuilt (files quarantined whole are not)."""
    identities = {f.identity for f in rebuilt.files}
    return sum(getattr(f, name) for f in old.files if f.identity in identities)

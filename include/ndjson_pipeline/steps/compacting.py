"""Compaction: a closed day's small Parquet files merged into target-sized ones, swapped in as a reprocess is.

At low volume a day collects a file per manifest and partition, hundreds of a
few MB. Compacting the day rewrites them, rows untouched, into as few files as
``target_file_mb`` allows, through the conversion's own writer.

- **What is merged** (``plan_compaction``): only a closed day's files (no
  pending file, open manifest or unpublished alert), and of those only what its
  SUCCEEDED manifests' results list and the lake holds, under half the target
  size (a file near the target gains nothing from a rewrite). Files are merged
  per partition and per output schema (schema version, read mode and lineage as
  the results record them), so a file never mixes columns, and per landing day,
  so a later reprocess of the day never touches another day's rows. A group
  whose files the target size would not make fewer is left as it is. Each group
  is a manifest of the exact file versions (eTags), in the compaction's layout
  (``LakeLayout.compaction``), and a compaction run (``--run_kind compact``)
  merges it there.
- **The swap** (``swap_compaction``), once every group has its result: the same
  switch as a reprocess's (``swapping.switch_partitions``): readers of the
  catalog move to the compacted partitions in one update each, and back once
  the lake's files are replaced. In the lake the compacted files are copied in,
  each manifest whose rows they merged lists them in its result (with its own
  rows in each) and its publish log, and the merged files are deleted. The
  ledger is not touched: every file keeps its rows, so the day's results and
  ledger reconcile as before. Readers of the dataset's directory see the merged
  files and the compacted ones together between the copies and the delete.
- A later reprocess of the day rebuilds every manifest sharing a compacted file
  (``reprocessing.sharing_files``) and replaces the shared files with their own;
  a later compaction merges whatever is small again.

Every step is safe to repeat; once the record exists a retry only removes the layout.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any

from ndjson_pipeline.catalog import DatasetCatalog, DatasetTable
from ndjson_pipeline.clock import utcnow
from ndjson_pipeline.conversion import RunKind
from ndjson_pipeline.files import FileId, FileVersion
from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.ledger import Ledger, ManifestState
from ndjson_pipeline.manifest import JobResult, Manifest, ManifestRef, OutputFile
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.steps.reprocessing import COMPACTED, RebuildRef, rebuild_id_for
from ndjson_pipeline.steps.swapping import (
    day_results,
    keep_replaced,
    remove_work,
    replaced_result,
    switch_partitions,
    work_results,
)
from ndjson_pipeline.storage import Storage, split_s3_uri

log = logging.getLogger(__name__)

ACTION = COMPACTED
# A file under this share of target_file_mb is small: worth merging with others.
SMALL_SHARE = 0.5
_MiB = 1024 * 1024


@dataclass(frozen=True)
class CompactionPlan:
    """A day's groups of small files to merge (in a dry run: what a real run would merge)."""

    day: str
    compaction_id: str
    manifests: list[RebuildRef]  # one compaction manifest per group
    files: int  # small files to merge
    bytes: int
    files_after: int  # what the target size makes of them

    def summary(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "compaction_id": self.compaction_id,
            "groups": len(self.manifests),
            "files": self.files,
            "bytes": self.bytes,
            "files_after": self.files_after,
        }


@dataclass(frozen=True)
class CompactionRecord:
    """What one compaction did to a day, written under the day and listed by the day report."""

    action: str
    day: str
    compaction_id: str
    requested_by: str
    requested_at: str
    triggered_by: str | None
    manifests: int  # manifests whose rows moved into compacted files
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_compaction(
    ledger: Ledger,
    storage: Storage,
    settings: PipelineSettings,
    day: str,
    *,
    requested_by: str,
    dry_run: bool,
    today: date | None = None,
) -> CompactionPlan:
    """The day's groups of small files (see the module doc); unless ``dry_run``, their manifests written."""
    if settings.table_format == "iceberg":
        raise PipelineError(
            f"day {day}: an Iceberg table is compacted by Glue's table optimizer (docs/deployment.md), "
            "not by this action (setting 'table_format' is 'iceberg')"
        )
    compaction_id = rebuild_id_for(requested_by, day)
    if compaction_record(storage, settings, day, requested_by) is not None:
        return CompactionPlan(day, compaction_id, [], 0, 0, 0)
    if day >= (today or utcnow().date()).isoformat():
        raise PipelineError(f"day {day} is not over yet: compact it once it is closed")
    if ledger.has_open_work(day):
        raise PipelineError(
            f"day {day} still has open work (pending files, open manifests or alerts to publish): "
            "compact it once it is closed"
        )
    lake, work = settings.layout, settings.layout.compaction(compaction_id)
    target = settings.conversion.target_file_mb * _MiB
    groups: dict[tuple[str, str], list[FileVersion]] = defaultdict(list)
    for uri, (file, schema) in _small_files(ledger, storage, lake, day, target * SMALL_SHARE).items():
        groups[(str(LakeLayout.dt_of(uri)), schema)].append(file)
    refs, files, size, after = [], 0, 0, 0
    for (_, _), group in sorted(groups.items()):
        total = sum(f.size for f in group)
        count = math.ceil(total / target)
        if count >= len(group):
            continue  # merging would not make fewer files
        manifest = Manifest.for_files(day, group)
        if not dry_run:
            storage.write_bytes(work.manifest_uri(day, manifest.manifest_id), manifest.to_json().encode())
        refs.append(RebuildRef(ManifestRef.of(manifest), compaction_id, RunKind.COMPACT))
        files, size, after = files + len(group), size + total, after + count
    plan = CompactionPlan(day, compaction_id, refs, files, size, after)
    log.info(
        "%scompaction of %s: %s",
        "dry run: " if dry_run else "",
        day,
        json.dumps(plan.summary()),
        extra={**plan.summary(), "dry_run": dry_run},
    )
    return plan


def _small_files(
    ledger: Ledger, storage: Storage, lake: LakeLayout, day: str, small_bytes: float
) -> dict[str, tuple[FileVersion, str]]:
    """The day's files under ``small_bytes`` that SUCCEEDED manifests list, as the lake holds them; their schemas."""
    listed: dict[str, str] = {}
    for manifest_id, result in day_results(storage, lake, day).items():
        record = ledger.get_manifest(manifest_id)
        if record is None or record.state is not ManifestState.SUCCEEDED:
            continue  # a result whose finaliser has not run, or a late run's: not the lake's yet
        schema = json.dumps([result.schema, result.schema_version], sort_keys=True)
        listed |= {o.path: schema for o in result.output_files}
    found: dict[str, tuple[FileVersion, str]] = {}
    for dt in sorted({dt for uri in listed if (dt := LakeLayout.dt_of(uri))}):
        bucket, prefix = split_s3_uri(lake.partition_uri(dt) + "/")
        for page in storage.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                file_id = FileId.from_listing(bucket, obj)
                if file_id.uri in listed and obj["Size"] < small_bytes:
                    version = FileVersion(bucket, file_id.key, file_id.etag, obj["Size"])
                    found[file_id.uri] = (version, listed[file_id.uri])
    return found


def compaction_record(
    storage: Storage, settings: PipelineSettings, day: str, requested_by: str
) -> CompactionRecord | None:
    """The record of the day's compaction by this run, once it is swapped in (None before)."""
    body = storage.read_bytes_if_exists(settings.layout.maintenance_uri(day, f"{ACTION}-{requested_by}"))
    return None if body is None else CompactionRecord(**json.loads(body))


def swap_compaction(
    storage: Storage,
    settings: PipelineSettings,
    catalog: DatasetTable | None,
    day: str,
    *,
    requested_by: str,
    triggered_by: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CompactionRecord:
    """Put the day's compacted files in place of the files they merged (the module doc's swap); return the record."""
    lake = settings.layout
    compaction_id = rebuild_id_for(requested_by, day)
    work = lake.compaction(compaction_id)
    done = compaction_record(storage, settings, day, requested_by)
    if done is not None:
        remove_work(storage, work)
        return done
    compacted = work_results(storage, work, day)
    merged = {f.uri: f for result in compacted.values() for f in result.files}  # what the files held, by URI
    # The results as they were before any swap of this compaction rewrote them (a retry finds them kept aside).
    results = {m: replaced_result(storage, lake, work, day, m) for m in day_results(storage, lake, day)}
    holders = {m: r for m, r in results.items() if set(merged) & {o.path for o in r.output_files}}
    keep_replaced(storage, work, day, holders)
    moves = _moves(day, lake, work, compacted, holders, merged)
    names = tuple(f"part-{manifest_id}-" for manifest_id in compacted)
    dts = {dt for result in compacted.values() for o in result.output_files if (dt := LakeLayout.dt_of(o.path))}

    def replace_in_lake() -> None:
        for result in compacted.values():
            for output in result.output_files:
                storage.copy(output.path, work.moved_to(output.path, lake))
        for manifest_id, result in holders.items():
            _list_compacted_files(storage, lake, day, manifest_id, result, moves[manifest_id], set(merged))
        storage.delete(sorted(merged))
        for manifest_id in holders:
            log_uri = lake.publish_log_uri(day, manifest_id)
            published = PublishLog.read(storage, log_uri)
            if published is not None:
                PublishLog(frozenset(published.uris - set(merged))).write(storage, log_uri)

    switch_partitions(
        storage,
        settings,
        catalog if isinstance(catalog, DatasetCatalog) else None,  # plan_compaction refuses an Iceberg table
        work,
        dts,
        replaced=lambda uri: uri in merged or uri.rsplit("/", 1)[-1].startswith(names),
        described_by=max(holders.values(), key=lambda r: r.schema_version or 0),
        replace_in_lake=replace_in_lake,
        sleep=sleep,
    )
    for uri in storage.list(work.usage_prefix(day)):
        storage.copy(uri, work.moved_to(uri, lake))  # the compaction's own cost counts for the day
    outputs = [o for result in compacted.values() for o in result.output_files]
    record = CompactionRecord(
        action=ACTION,
        day=day,
        compaction_id=compaction_id,
        requested_by=requested_by,
        requested_at=utcnow().isoformat(),
        triggered_by=triggered_by,
        manifests=len(holders),
        files_before=len(merged),
        files_after=len(outputs),
        bytes_before=sum(
            {o.path: o.bytes for r in holders.values() for o in r.output_files if o.path in merged}.values()
        ),
        bytes_after=sum(o.bytes for o in outputs),
        rows=sum(o.rows for o in outputs),
    )
    storage.write_bytes(
        lake.maintenance_uri(day, f"{ACTION}-{requested_by}"),
        json.dumps(record.as_dict(), indent=2, sort_keys=True).encode(),
    )
    remove_work(storage, work)
    log.info(
        "compaction of %s swapped in: %s",
        day,
        json.dumps(record.as_dict()),
        extra={"day": day, "compaction": record.as_dict()},
    )
    return record


def _moves(
    day: str,
    lake: LakeLayout,
    work: LakeLayout,
    compacted: dict[str, JobResult],
    holders: dict[str, JobResult],
    merged: dict[str, Any],
) -> dict[str, list[OutputFile]]:
    """For each manifest whose rows were merged, the compacted files (their lake names) with its rows in each.

    Refuses, changing nothing, when the rows a compaction run read from a file are
    not the rows the manifests' results say it holds.
    """
    rows_in: dict[str, dict[str, int]] = defaultdict(dict)  # merged file -> manifest -> its rows there
    for manifest_id, result in holders.items():
        for output in result.output_files:
            if output.path in merged:
                rows_in[output.path][manifest_id] = output.rows
    wrong = [
        f"{uri}: read {file.rows_out} rows, results list {sum(rows_in[uri].values())}"
        for uri, file in merged.items()
        if sum(rows_in[uri].values()) != file.rows_out
    ]
    if wrong:
        raise PipelineError(f"compaction of {day}: rows do not add up, nothing was swapped: {wrong[:3]}")
    moves: dict[str, list[OutputFile]] = defaultdict(list)
    for result in compacted.values():
        for output in result.output_files:
            target = work.moved_to(output.path, lake)
            for manifest_id in holders:
                rows = sum(rows_in[FileId.parse(source).uri].get(manifest_id, 0) for source in output.sources)
                if rows:
                    moves[manifest_id].append(OutputFile(target, output.bytes, rows))
    return moves


def _list_compacted_files(
    storage: Storage,
    lake: LakeLayout,
    day: str,
    manifest_id: str,
    replaced: JobResult,
    compacted: list[OutputFile],
    merged: set[str],
) -> None:
    """The manifest's publish log and result list the compacted files its rows are in, in place of the merged ones.

    The log gains them before the merged files go (a reprocess of the day finds
    every file to replace in it); its result keeps its files and counts.
    """
    log_uri = lake.publish_log_uri(day, manifest_id)
    published = PublishLog.read(storage, log_uri)
    logged = published.uris if published else frozenset()
    PublishLog(frozenset(logged | {o.path for o in compacted})).write(storage, log_uri)
    kept = [o for o in replaced.output_files if o.path not in merged and o.path not in {c.path for c in compacted}]
    outputs = tuple(sorted([*kept, *compacted], key=lambda o: o.path))
    storage.write_bytes(lake.result_uri(day, manifest_id), replace(replaced, output_files=outputs).to_json().encode())

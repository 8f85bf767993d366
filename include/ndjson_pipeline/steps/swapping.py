"""Swapping new output into the lake: what a reprocess and a compaction both do once their work is converted.

A reprocess (``reprocessing``) and a compaction (``compacting``) each convert a
day's manifests again into a layout of their own under ``_work/`` (``work``);
these are the steps that check that work and then move it into the lake for
catalog readers in one switch per partition (``switch_partitions``), and
replace each manifest's objects in the lake (``replace_manifest_output``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from ndjson_pipeline.catalog import DatasetCatalog
from ndjson_pipeline.layout import LakeLayout, PublishLog
from ndjson_pipeline.manifest import JobResult, Manifest, OutputFile, ReconciliationError
from ndjson_pipeline.settings import PipelineSettings
from ndjson_pipeline.steps import PipelineError
from ndjson_pipeline.storage import Storage


def day_results(storage: Storage, lake: LakeLayout, day: str) -> dict[str, JobResult]:
    """The lake's results of the day's manifests, by manifest id (a compensated manifest has none)."""
    prefix = lake.result_uri(day, "").removesuffix(".json")
    results = (JobResult.from_json(storage.read_bytes(uri)) for uri in storage.list(prefix))
    return {result.manifest_id: result for result in results}


def work_results(storage: Storage, work: LakeLayout, day: str) -> dict[str, JobResult]:
    """The result of each manifest planned in ``work`` (a reprocess's or a compaction's); every one must have one."""
    manifests = sorted(storage.list(work.manifest_uri(day, "").removesuffix(".json")))
    if not manifests:
        raise PipelineError(f"day {day}: nothing was planned under {work.lake_root}")
    results: dict[str, JobResult] = {}
    missing = []
    for uri in manifests:
        manifest = Manifest.from_json(storage.read_bytes(uri))
        body = storage.read_bytes_if_exists(work.result_uri(day, manifest.manifest_id))
        if body is None:
            missing.append(manifest.manifest_id)
            continue
        result = JobResult.from_json(body)
        try:
            result.check_reconciled(manifest)
        except ReconciliationError as exc:
            raise PipelineError(
                f"day {day}: a manifest rebuilt under {work.lake_root} does not reconcile, nothing was swapped: {exc}"
            ) from exc
        results[manifest.manifest_id] = result
    if missing:
        raise PipelineError(
            f"day {day}: {len(missing)} manifests under {work.lake_root} have no result (their run failed: clear it), "
            f"e.g. {missing[:3]}; nothing was swapped"
        )
    return results


def replaced_result(storage: Storage, lake: LakeLayout, rebuild: LakeLayout, day: str, manifest_id: str) -> JobResult:
    """The lake's result the rebuild replaces, as it was before the swap (``keep_replaced`` keeps it aside)."""
    kept = storage.read_bytes_if_exists(rebuild.replaced_result_uri(day, manifest_id))
    body = kept if kept is not None else storage.read_bytes_if_exists(lake.result_uri(day, manifest_id))
    if body is None:
        raise PipelineError(
            f"manifest {manifest_id} is SUCCEEDED but its result {lake.result_uri(day, manifest_id)} is gone"
        )
    return JobResult.from_json(body)


def keep_replaced(storage: Storage, rebuild: LakeLayout, day: str, old: dict[str, JobResult]) -> None:
    """Keep the replaced results aside before any is overwritten, so a retried swap reports the same figures."""
    for manifest_id, result in old.items():
        uri = rebuild.replaced_result_uri(day, manifest_id)
        if storage.read_bytes_if_exists(uri) is None:
            storage.write_bytes(uri, result.to_json().encode())


def switch_partitions(
    storage: Storage,
    settings: PipelineSettings,
    catalog: DatasetCatalog | None,
    work: LakeLayout,
    dts: set[str],
    *,
    replaced: Callable[[str], bool],
    described_by: JobResult,
    replace_in_lake: Callable[[], None],
    sleep: Callable[[float], None],
) -> None:
    """Change the lake's ``dts`` partitions for readers of the catalog in one switch each: old, or new, never a mix.

    ``work`` holds the new files of the partitions (rebuilt or compacted);
    ``replaced(uri)`` says whether a file of the lake (or its name in ``work``)
    is one of them or one they replace. Everything else the lake's partitions hold
    is carried into ``work``'s, the catalog points there, and after the grace
    ``replace_in_lake`` changes the lake's files; then the catalog points back, and
    the grace passes again (steps 2, 3 and 5 of the module doc).
    """
    lake = settings.layout
    carry_late_files(storage, lake, work, dts, replaced)
    if catalog is not None:
        catalog.point_partitions(described_by, {dt: work.partition_uri(dt) + "/" for dt in dts}, existing_only=True)
        # What other manifests published between the listing and the switch: visible again at once.
        carry_late_files(storage, lake, work, dts, replaced)
        sleep(settings.reprocess_grace_seconds)
    replace_in_lake()
    if catalog is not None:
        catalog.point_partitions(described_by, {dt: lake.partition_uri(dt) + "/" for dt in dts}, existing_only=False)
        sleep(settings.reprocess_grace_seconds)


def carry_late_files(
    storage: Storage, lake: LakeLayout, work: LakeLayout, dts: set[str], replaced: Callable[[str], bool]
) -> None:
    """Make ``work``'s partitions hold, besides the new files, exactly what else the lake's hold.

    Copies what is missing, and removes copies whose original is gone (a
    manifest compensated since an earlier try), so a retry carries no stale rows.
    """
    for dt in sorted(dts):
        wanted = {
            lake.moved_to(uri, work): uri for uri in storage.list(lake.partition_uri(dt) + "/") if not replaced(uri)
        }
        carried = {uri for uri in storage.list(work.partition_uri(dt) + "/") if not replaced(work.moved_to(uri, lake))}
        stale = sorted(carried - set(wanted))
        if stale:
            storage.delete(stale)
        for target, source in sorted(wanted.items()):
            if target not in carried:
                storage.copy(source, target)


def replace_manifest_output(
    storage: Storage,
    lake: LakeLayout,
    rebuild: LakeLayout,
    day: str,
    manifest_id: str,
    result: JobResult,
    replaced: JobResult,
    dts: set[str],
    *,
    move_data: bool = True,
) -> None:
    """The lake's objects of one manifest become the rebuilt ones: copied over, the old ones not rebuilt removed.

    The lake's result keeps the outcomes of the manifest's files the rebuild
    left out (quarantined whole), so it still covers every file of the manifest.
    Unless ``move_data`` (an Iceberg table: its snapshots name their files), the
    Parquet is left alone: ``result`` names where the commit put the rebuilt files,
    and the old ones stay for the older snapshots; only the quarantine and the
    result are replaced.
    """
    published = PublishLog.read(storage, rebuild.publish_log_uri(day, manifest_id))
    if published is None:
        raise PipelineError(f"rebuilt manifest {manifest_id} has a result but no publish log under {rebuild.lake_root}")
    in_dataset = lake.dataset_uri + "/"
    rebuilt_data = rebuild.dataset_uri + "/"
    targets = {
        rebuild.moved_to(uri, lake): uri for uri in published.uris if move_data or not uri.startswith(rebuilt_data)
    }
    files_record = lake.quarantined_files_uri(day, manifest_id)
    rebuilt_files = {f.identity for f in result.files}
    kept_lines = _kept_whole_quarantines(storage, files_record, rebuilt_files)
    old_log = PublishLog.read(storage, lake.publish_log_uri(day, manifest_id))
    existing = set(old_log.uris) if old_log else set()
    for dt in dts:
        existing |= set(storage.list(lake.part_prefix(dt, manifest_id)))
    existing |= set(storage.list(lake.quarantine_uri(day, manifest_id) + "/"))
    if not move_data:
        existing = {uri for uri in existing if not uri.startswith(in_dataset)}
    keep = set(targets) | ({files_record} if kept_lines or files_record in targets else set())
    PublishLog(frozenset(existing | keep)).write(storage, lake.publish_log_uri(day, manifest_id))
    for target, source in sorted(targets.items()):
        if target != files_record:
            storage.copy(source, target)
    if kept_lines or files_record in targets:
        rebuilt_record = storage.read_bytes(targets[files_record]) if files_record in targets else b""
        storage.write_bytes(files_record, kept_lines + rebuilt_record)
    storage.delete(sorted(existing - keep))
    PublishLog(frozenset(keep)).write(storage, lake.publish_log_uri(day, manifest_id))
    where = (lambda path: rebuild.moved_to(path, lake)) if move_data else (lambda path: path)
    moved = tuple(OutputFile(where(o.path), o.bytes, o.rows) for o in result.output_files)
    files = (*result.files, *(f for f in replaced.files if f.identity not in rebuilt_files))
    merged = replace(result, files=tuple(sorted(files, key=lambda f: f.identity)), output_files=moved)
    storage.write_bytes(lake.result_uri(day, manifest_id), merged.to_json().encode())


def _kept_whole_quarantines(storage: Storage, files_record: str, rebuilt: set[str]) -> bytes:
    """Lines of the lake's files record for files the reprocess did not convert again (quarantined whole before)."""
    body = storage.read_bytes_if_exists(files_record)
    if body is None:
        return b""
    lines = [line for line in body.decode().splitlines() if line.strip()]
    return "".join(line + "\n" for line in lines if json.loads(line).get("identity") not in rebuilt).encode()


def remove_work(storage: Storage, work: LakeLayout) -> None:
    """Remove a reprocess's or a compaction's own layout, once the lake no longer needs it."""
    storage.delete_prefix(work.lake_root)
    storage.delete_prefix(work.quarantine_root)

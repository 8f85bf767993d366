"""Compaction: a manifest of a day's small Parquet files rewritten as target-sized files (``--run_kind compact``).

The manifest lists the exact versions (eTags) of the files to merge, all of one
partition and one output schema; the Airflow side plans it and, once the run's
result exists, swaps the compacted files in. The run groups the files as a
conversion groups landing files (``groups.plan_groups``: about
``--target_file_mb`` of them per group, so as few files as that size allows),
and each group's Spark task copies its files' rows, lineage and rescued data
included, through the same writer a conversion uses (``output.GroupParts``):
sorting, row groups and statistics are the conversion's. Publication and the
result are the conversion's too (``job``): each output file's result entry
names the files it merged (``OutputFile.sources``).

A file that no longer has the planned eTag (a reprocess replaced it since)
fails the run, naming the file: compaction never merges rows it was not asked
to, and never leaves a file out.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from ndjson_job.groups import GroupOutput, plan_groups
from ndjson_job.logs import configure_job_logging
from ndjson_job.output import GroupParts
from ndjson_job.reading import READ_BYTES
from ndjson_pipeline.conversion import ConversionOptions, JobArguments, LogOptions
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout
from ndjson_pipeline.manifest import FileResult, Manifest
from ndjson_pipeline.storage import ObjectChanged, Storage

log = logging.getLogger(__name__)


class SourceChanged(RuntimeError):
    """A file to merge is not the version the compaction was planned with; the message names it."""


@dataclass(frozen=True)
class CompactionWork:
    """One task's files to merge into one output file, and where its output goes."""

    index: int
    files: tuple[FileVersion, ...]
    storage: Storage
    staging: str
    manifest_id: str
    options: ConversionOptions
    logs: LogOptions = field(default_factory=LogOptions)


def plan_compaction_work(
    manifest: Manifest, args: JobArguments, storage: Storage, staging: str
) -> list[CompactionWork]:
    """One task per output file; every file of the manifest must be in a partition of the dataset."""
    outside = [f.uri for f in manifest.files if LakeLayout.dt_of(f.uri) is None]
    if outside:
        raise SourceChanged(f"compaction {manifest.manifest_id}: files outside a partition: {outside[:3]}")
    return [
        CompactionWork(
            index=index,
            files=files,
            storage=storage.for_tasks(),
            staging=staging,
            manifest_id=manifest.manifest_id,
            options=args.options,
            logs=args.logs,
        )
        for index, files in enumerate(plan_groups(manifest.files, args.options.target_file_mb))
    ]


def compact_group(work: CompactionWork) -> GroupOutput:
    """Copy the rows of a group's files into one Parquet file, staged; runs in a Spark task."""
    configure_job_logging(work.logs)
    with tempfile.TemporaryDirectory(prefix=f"ndjson-compact-{work.index:05d}-") as folder:
        parts = GroupParts(Path(folder), work.options, work.manifest_id)
        try:
            results = tuple(_copy_rows(work, file, parts, Path(folder)) for file in work.files)
            staged, _ = parts.stage(work.storage, work.staging, work.index)
        finally:
            parts.close()
    usage = None if work.storage.recorder is None else work.storage.recorder.take()
    return GroupOutput(index=work.index, files=results, parts=staged, lines=None, usage=usage)


def _copy_rows(work: CompactionWork, file: FileVersion, parts: GroupParts, folder: Path) -> FileResult:
    parts.start_file()
    local = folder / "source.parquet"
    try:
        with local.open("wb") as out:
            for chunk in work.storage.read_version_chunks(file.uri, file.etag, READ_BYTES):
                out.write(chunk)
    except ObjectChanged as exc:
        raise SourceChanged(
            f"compaction {work.manifest_id}: {file.uri} is no longer the version it was planned with ({exc}); "
            "plan the compaction again"
        ) from exc
    dt = LakeLayout.dt_of(file.uri)
    source = pq.ParquetFile(local)
    rows = 0
    for index in range(source.num_row_groups):
        table = source.read_row_group(index)
        dts = pc.fill_null(pa.nulls(table.num_rows, pa.string()), dt)
        parts.add(table.append_column(PARTITION_COLUMN, dts), [])
        rows += table.num_rows
    source.close()
    log.debug(
        "file %s of compaction %s: %d rows",
        file.uri,
        work.manifest_id,
        rows,
        extra={"manifest_id": work.manifest_id, "group": work.index, "uri": file.uri, "rows_in": rows},
    )
    return FileResult(file.identity, file.uri, FileState.DONE, rows_in=rows, rows_out=rows)


def run_compaction(spark: SparkSession, works: list[CompactionWork]) -> list[GroupOutput]:
    """``compact_group`` for each group, one Spark task per group (as ``groups.run_groups`` converts)."""
    if not works:
        return []
    return spark.sparkContext.parallelize(works, len(works)).map(compact_group).collect()

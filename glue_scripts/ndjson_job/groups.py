"""Output groups: which files go together, and the Spark task that converts one group and stages its output."""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from ndjson_job.files import FileRows, convert_file, gunzip
from ndjson_job.lines import LineRules, MiB
from ndjson_job.schema import LINEAGE_COLUMNS
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.layout import PARTITION_COLUMN
from ndjson_pipeline.manifest import FileResult
from ndjson_pipeline.storage import Storage


@dataclass(frozen=True)
class GroupWork:
    """Everything one task needs: its files and where its output goes."""

    index: int
    files: tuple[FileVersion, ...]
    rules: LineRules
    storage: Storage
    staging: str
    manifest_id: str


@dataclass(frozen=True)
class StagedPart:
    """A group's staged Parquet file of one dt."""

    dt: str
    uri: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class StagedLines:
    """A group's staged quarantined lines (one JSON object a line)."""

    uri: str
    lines: int


@dataclass(frozen=True)
class GroupOutput:
    """What a group task returns: each file's result, its staged Parquet files and quarantined lines."""

    index: int
    files: tuple[FileResult, ...]
    parts: tuple[StagedPart, ...]
    lines: StagedLines | None


def files_for_size(total_bytes: int, target_file_mb: float) -> int:
    """How many output files ``total_bytes`` of input gets; input bytes over-estimate Parquet size."""
    return max(1, math.ceil(total_bytes / (target_file_mb * MiB)))


def plan_groups(files: Iterable[FileVersion], target_file_mb: float) -> list[tuple[FileVersion, ...]]:
    """Split files into output groups of about ``target_file_mb`` of input each, the same way every time.

    Biggest files first, each to the lightest group: groups end up near equal, which
    keeps the tasks (one per group) near equal too.
    """
    files = sorted(files, key=lambda f: (-f.size, f.uri))
    if not files:
        return []
    count = min(len(files), files_for_size(sum(f.size for f in files), target_file_mb))
    groups: list[list[FileVersion]] = [[] for _ in range(count)]
    loads = [0] * count
    for f in files:
        lightest = min(range(count), key=lambda g: (loads[g], g))
        groups[lightest].append(f)
        loads[lightest] += f.size
    return [tuple(sorted(group, key=lambda f: f.uri)) for group in groups]


def convert_group(work: GroupWork) -> GroupOutput:
    """Convert one group's files and stage its output; runs in a Spark task."""
    results, tables, bad_lines = [], [], []
    for file in work.files:
        data = work.storage.read_version(file.uri, file.etag)
        if data is None:
            reason = f"superseded: {file.uri} no longer has eTag {file.etag} (changed or deleted)"
            results.append(FileResult(file.identity, file.uri, FileState.QUARANTINED, reason=reason))
            continue
        error = None
        if file.uri.lower().endswith(".gz"):
            data, error = gunzip(data)
        rows = FileRows(file.uri, file_error=error) if error else convert_file(file.uri, data, work.rules)
        results.append(rows.result(file))
        bad_lines += [{**line, "manifest_id": work.manifest_id} for line in rows.bad_lines]
        if rows.rows_out:
            tables.append(_with_lineage(rows.rows, file.uri, work))
    return GroupOutput(
        index=work.index,
        files=tuple(results),
        parts=_stage_parts(work, tables),
        lines=_stage_lines(work, bad_lines),
    )


def _stage_parts(work: GroupWork, tables: list[pa.Table]) -> tuple[StagedPart, ...]:
    if not tables:
        return ()
    table = pa.concat_tables(tables)
    parts = []
    for dt in sorted(set(table.column(PARTITION_COLUMN).to_pylist())):
        part = table.filter(pc.equal(table.column(PARTITION_COLUMN), dt)).drop_columns([PARTITION_COLUMN])
        buffer = io.BytesIO()
        pq.write_table(part, buffer, compression=work.rules.options.compression)
        uri = f"{work.staging}/data/{PARTITION_COLUMN}={dt}/part-{work.index:05d}.parquet"
        work.storage.write_bytes(uri, buffer.getvalue())
        parts.append(StagedPart(dt=dt, uri=uri, rows=part.num_rows, bytes=buffer.tell()))
    return tuple(parts)


def _stage_lines(work: GroupWork, bad_lines: list[dict]) -> StagedLines | None:
    if not bad_lines:
        return None
    staged = StagedLines(uri=f"{work.staging}/quarantine/lines-{work.index:05d}.json", lines=len(bad_lines))
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in bad_lines)
    work.storage.write_bytes(staged.uri, text.encode())
    return staged


def _with_lineage(rows: pa.Table, uri: str, work: GroupWork) -> pa.Table:
    if not work.rules.options.lineage:
        return rows
    constant = functools.partial(pc.fill_null, pa.nulls(rows.num_rows, pa.string()))
    rows = rows.append_column(pa.field(LINEAGE_COLUMNS[0], pa.string(), nullable=False), constant(uri))
    return rows.append_column(LINEAGE_COLUMNS[1], constant(work.manifest_id))


def run_groups(spark: SparkSession, works: list[GroupWork]) -> list[GroupOutput]:
    """Run ``convert_group`` for each group, one Spark task per group.

    The executors import this package from the job's ``--extra-py-files`` (locally:
    ``--py-files`` or the session's ``spark.submit.pyFiles``), so the task is pickled by reference.
    """
    if not works:
        return []
    return spark.sparkContext.parallelize(works, len(works)).map(convert_group).collect()

"""Output groups: which files go together, and the Spark task that converts one group and stages its output."""

from __future__ import annotations

import functools
import logging
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from ndjson_job.drift import group_drift
from ndjson_job.files import FileConverter
from ndjson_job.lines import LineRules
from ndjson_job.logs import configure_job_logging
from ndjson_job.output import GroupParts, StagedLines, StagedPart
from ndjson_job.reading import MiB, Unconvertible, text_blocks
from ndjson_pipeline.conversion import LogOptions
from ndjson_pipeline.dataset_schema import LINEAGE_COLUMNS
from ndjson_pipeline.drift import Drift
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.manifest import FileResult
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupWork:
    """Everything one task needs: its files, where its output goes, and how it logs."""

    index: int
    files: tuple[FileVersion, ...]
    rules: LineRules
    storage: Storage
    staging: str
    manifest_id: str
    logs: LogOptions = field(default_factory=LogOptions)


@dataclass(frozen=True)
class GroupOutput:
    """What a group task returns: each file's result, its staged Parquet files and quarantined lines."""

    index: int
    files: tuple[FileResult, ...]
    parts: tuple[StagedPart, ...]
    lines: StagedLines | None
    usage: Usage | None = None  # the task's own requests, when the job records usage
    drift: Drift | None = None  # the field paths its rows hold in _rescued_data (ndjson_job.drift)


class _QuarantinedAfterWriting(Exception):
    """A file turned out unconvertible after some of its rows were written: the group starts again without it."""

    def __init__(self, result: FileResult) -> None:
        super().__init__(result.reason)
        self.result = result


# Bytes of a file per byte of the Parquet it becomes (snappy, lineage on), measured on the sample events
# (tools/sample_data.py): NDJSON text about 4.7, the same text gzipped about 0.77; a compaction's files are Parquet.
# Groups are sized by them before a row is read, so a group writes about target_file_mb of Parquet.
NDJSON_BYTES_PER_PARQUET_BYTE = 4.5
BYTES_PER_PARQUET_BYTE = {".gz": 0.75, ".parquet": 1.0}


def expected_parquet_bytes(file: FileVersion) -> float:
    """About how many bytes of Parquet ``file`` becomes, from its size and kind (its name's suffix)."""
    suffix = PurePosixPath(file.key).suffix.lower()
    return file.size / BYTES_PER_PARQUET_BYTE.get(suffix, NDJSON_BYTES_PER_PARQUET_BYTE)


def files_for_size(parquet_bytes: float, target_file_mb: float) -> int:
    """How many output files of about ``target_file_mb`` ``parquet_bytes`` of Parquet make."""
    return max(1, math.ceil(parquet_bytes / (target_file_mb * MiB)))


def plan_groups(files: Iterable[FileVersion], target_file_mb: float) -> list[tuple[FileVersion, ...]]:
    """Split files into output groups of about ``target_file_mb`` of Parquet each, the same way every time.

    A group is a run of consecutive files in key order: landing keys mostly follow
    arrival (dated prefixes, timestamped names) and so event time, so each group's
    file covers a slice of the day that a query on the event time can skip whole.
    A file goes to the group whose share of the total holds its middle, which
    keeps groups (and so tasks) within about a file of equal.
    """
    files = sorted(files, key=lambda f: f.uri)
    sizes = [expected_parquet_bytes(f) for f in files]
    total = sum(sizes)
    if not files or total <= 0:
        return [tuple(files)] if files else []
    count = min(len(files), files_for_size(total, target_file_mb))
    groups: list[list[FileVersion]] = [[] for _ in range(count)]
    before = 0.0
    for file, size in zip(files, sizes, strict=True):
        groups[min(count - 1, int((before + size / 2) * count / total))].append(file)
        before += size
    return [tuple(group) for group in groups if group]


def convert_group(work: GroupWork) -> GroupOutput:
    """Convert one group's files, streamed, and stage its output; runs in a Spark task.

    Output is built on the task's local disk (``GroupParts``) and stored under the
    attempt's staging prefix at the end.
    """
    configure_job_logging(work.logs)  # this task's Python worker logs as the driver does
    settled: dict[str, FileResult] = {}  # files quarantined whole after some of their rows were written
    while True:
        with tempfile.TemporaryDirectory(prefix=f"ndjson-group-{work.index:05d}-") as folder:
            parts = GroupParts(Path(folder), work.rules.options, work.manifest_id)
            try:
                results = tuple(settled.get(f.identity) or _convert_file(work, f, parts) for f in work.files)
                staged, lines = parts.stage(work.storage, work.staging, work.index)
                drift = group_drift(Path(folder), work.rules.schema)
            except _QuarantinedAfterWriting as restart:
                log.warning(
                    "%s (%s): converting group %s of manifest %s again without it",
                    restart.result.uri,
                    restart,
                    work.index,
                    work.manifest_id,
                    extra={"manifest_id": work.manifest_id, "day": work.rules.day, "group": work.index},
                )
                settled[restart.result.identity] = restart.result
                continue
            finally:
                parts.close()
        usage = None if work.storage.recorder is None else work.storage.recorder.take()
        return GroupOutput(index=work.index, files=results, parts=staged, lines=lines, usage=usage, drift=drift)


def _convert_file(work: GroupWork, file: FileVersion, parts: GroupParts) -> FileResult:
    parts.start_file()
    converter = FileConverter(file, work.rules)
    try:
        for block in text_blocks(work.storage, file, work.rules.options):
            converted = converter.convert(block)
            parts.add(_with_lineage(converted.rows, file.uri, work), converted.bad_lines)
        result = converter.finish()
    except Unconvertible as exc:
        result = FileResult(file.identity, file.uri, FileState.QUARANTINED, reason=exc.reason)
    if result.outcome == FileState.QUARANTINED and not parts.drop_file():
        raise _QuarantinedAfterWriting(result)
    log.debug(
        "file %s of manifest %s: %s, %d rows in, %d out, %d rescued, %d quarantined",
        file.uri,
        work.manifest_id,
        result.outcome,
        result.rows_in,
        result.rows_out,
        result.rows_rescued,
        result.rows_quarantined,
        extra={
            "manifest_id": work.manifest_id,
            "day": work.rules.day,
            "group": work.index,
            "uri": file.uri,
            "outcome": str(result.outcome),
            "rows_in": result.rows_in,
            "rows_out": result.rows_out,
            "rows_rescued": result.rows_rescued,
            "rows_quarantined": result.rows_quarantined,
        },
    )
    return result


def _with_lineage(rows: pa.Table | None, uri: str, work: GroupWork) -> pa.Table | None:
    if rows is None or not work.rules.options.lineage:
        return rows
    constant = functools.partial(pc.fill_null, pa.nulls(rows.num_rows, pa.string()))
    rows = rows.append_column(pa.field(LINEAGE_COLUMNS[0], pa.string(), nullable=False), constant(uri))
    return rows.append_column(LINEAGE_COLUMNS[1], constant(work.manifest_id))


def run_groups(spark: SparkSession, works: list[GroupWork]) -> list[GroupOutput]:
    """Run ``convert_group`` for each group, one Spark task per group.

    The executors import this package from the job's ``--extra-py-files`` (locally:
    ``--py-files`` or the session's ``addPyFile``), so the task is pickled by reference.
    """
    if not works:
        return []
    return spark.sparkContext.parallelize(works, len(works)).map(convert_group).collect()

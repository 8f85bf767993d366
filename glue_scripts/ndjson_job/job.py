"""The job's flow: one manifest in, its Parquet, quarantine and result out (``convert_manifest``).

A manifest of landing files is converted; with ``--run_kind compact`` it lists
Parquet files of the lake, whose rows are merged (``compaction``). Publication
and the result are the same for both.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from ndjson_job.compaction import plan_compaction_work, run_compaction
from ndjson_job.groups import GroupOutput, GroupWork, plan_groups, run_groups
from ndjson_job.lines import LineRules
from ndjson_job.publication import Publication, plan_publication, previous_dts, publish
from ndjson_job.schema import JobArgumentError, arrow_schema, output_schema, parse_schema, schema_version
from ndjson_pipeline.conversion import JobArguments, RunKind
from ndjson_pipeline.drift import Drift
from ndjson_pipeline.files import FileState
from ndjson_pipeline.manifest import FileResult, JobResult, Manifest, OutputFile
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import write_usage

log = logging.getLogger(__name__)


def convert_manifest(
    spark: SparkSession, args: JobArguments, storage: Storage, *, attempt: str | None = None
) -> JobResult:
    """Convert (or compact) one manifest end to end and write its result; return the result."""
    started = time.monotonic()
    manifest = load_manifest(storage, args)
    attempt = attempt or uuid.uuid4().hex
    result_schema: dict[str, Any] | None = None
    result_schema_version: int | None = None
    if args.run_kind is RunKind.COMPACT:
        # The files' rows are copied as they are: their schema is the one their manifests' results record.
        compactions = plan_compaction_work(
            manifest, args, storage, f"{args.layout.staging_uri(manifest.manifest_id)}/{attempt}"
        )
        log_planned(manifest, len(compactions))
        outputs = run_compaction(spark, compactions)
    else:
        schema_text = storage.read_bytes(args.schema_uri).decode("utf-8")
        schema = parse_schema(schema_text, args)
        works = plan_work(manifest, schema, args, storage, attempt, spark.sparkContext.defaultParallelism)
        log_planned(manifest, len(works))
        outputs = run_groups(spark, works)
        result_schema, result_schema_version = (
            output_schema(schema, args.options).jsonValue(),
            schema_version(schema_text, args),
        )
    timings = {"convert_s": time.monotonic() - started}

    step = time.monotonic()
    results, quarantined_files = file_results(manifest, outputs)
    publication = plan_publication(outputs, args, manifest, quarantined_files)
    result = JobResult(
        manifest_id=manifest.manifest_id,
        day=manifest.day,
        files=results,
        output_files=output_files(publication, outputs, args, manifest),
        schema=result_schema,
        schema_version=result_schema_version,
        # A compaction copies rows already counted by the conversions that wrote them.
        drift=None if args.run_kind is RunKind.COMPACT else manifest_drift(outputs),
    )
    result.check_reconciled(manifest)
    replace_output(storage, args, manifest, publication)
    timings["publish_s"] = time.monotonic() - step
    timings["total_s"] = time.monotonic() - started
    result = replace(result, timings={k: round(v, 3) for k, v in timings.items()})
    if storage.recorder is not None:
        record_usage(storage, args, manifest, attempt, outputs)
    # The completion marker, last.
    storage.write_bytes(args.result_uri, result.to_json().encode())
    log.info(
        "manifest %s of %s: %s rows in, %s out, %s rescued, %s quarantined, %s output file(s)",
        manifest.manifest_id,
        manifest.day,
        result.rows_in,
        result.rows_out,
        result.rows_rescued,
        result.rows_quarantined,
        len(result.output_files),
        extra={
            "manifest_id": manifest.manifest_id,
            "day": manifest.day,
            "files": len(result.files),
            "rows_in": result.rows_in,
            "rows_out": result.rows_out,
            "rows_rescued": result.rows_rescued,
            "rows_quarantined": result.rows_quarantined,
            "output_files": len(result.output_files),
            "seconds": round(timings["total_s"], 3),
        },
    )
    return result


def log_planned(manifest: Manifest, groups: int) -> None:
    log.debug(
        "manifest %s of %s: %d files, %d bytes, in %d group(s)",
        manifest.manifest_id,
        manifest.day,
        len(manifest.files),
        manifest.total_bytes,
        groups,
        extra={
            "manifest_id": manifest.manifest_id,
            "day": manifest.day,
            "files": len(manifest.files),
            "bytes": manifest.total_bytes,
            "groups": groups,
        },
    )


def output_files(
    publication: Publication, outputs: list[GroupOutput], args: JobArguments, manifest: Manifest
) -> tuple[OutputFile, ...]:
    """The result's output files; a compaction's name the files each one merged (one file a group)."""
    sources: dict[str, tuple[str, ...]] = {}
    if args.run_kind is RunKind.COMPACT:
        for output in outputs:
            for part in output.parts:
                final = args.layout.part_uri(part.dt, manifest.manifest_id, output.index, args.options.compression)
                sources[final] = tuple(f.identity for f in output.files)
    return tuple(
        OutputFile(path=path, bytes=publication.sizes[path], rows=publication.rows[path], sources=sources.get(path, ()))
        for path in sorted(publication.rows)
    )


def record_usage(
    storage: Storage, args: JobArguments, manifest: Manifest, attempt: str, outputs: list[GroupOutput]
) -> None:
    """The run's S3 requests, the driver's and every task's, under the manifest's day (one record per attempt)."""
    usage = storage.recorder.take()
    for output in outputs:
        if output.usage is not None:
            usage.add(output.usage)
    usage.requests["s3.PutObject"] += 1  # the result, written after this record
    write_usage(storage, args.layout, manifest.day, f"job-{manifest.manifest_id}-{attempt}", usage)


def manifest_drift(outputs: list[GroupOutput]) -> Drift:
    """The groups' drift added up, cut to the paths of most rows (``drift.MAX_PATHS``)."""
    total = Drift()
    for output in outputs:
        if output.drift is not None:
            total.merge(output.drift)
    return total.limited()


def load_manifest(storage: Storage, args: JobArguments) -> Manifest:
    """The manifest the arguments name; it must be the one they describe."""
    manifest = Manifest.from_json(storage.read_bytes(args.manifest_uri))
    if args.manifest_id != manifest.manifest_id or args.day != manifest.day:
        raise JobArgumentError(
            f"--manifest_id {args.manifest_id} --day {args.day} do not match {args.manifest_uri} "
            f"({manifest.manifest_id} of {manifest.day})"
        )
    return manifest


def plan_work(
    manifest: Manifest, schema: T.StructType, args: JobArguments, storage: Storage, attempt: str, cores: int = 1
) -> list[GroupWork]:
    """One task's work per output group; each attempt stages under its own prefix.

    A task reads on its share of the ``cores`` the job runs on: a manifest of fewer groups than cores (few
    files) still uses them all, through Arrow's threads.
    """
    staging = f"{args.layout.staging_uri(manifest.manifest_id)}/{attempt}"
    groups = plan_groups(manifest.files, args.options.target_file_mb)
    threads = max(1, cores // max(1, len(groups)))
    rules = LineRules(schema=arrow_schema(schema), day=manifest.day, options=args.options, threads=threads)
    return [
        GroupWork(
            index=index,
            files=files,
            rules=rules,
            storage=storage.for_tasks(),
            staging=staging,
            manifest_id=manifest.manifest_id,
            logs=args.logs,
        )
        for index, files in enumerate(groups)
    ]


def file_results(manifest: Manifest, outputs: list[GroupOutput]) -> tuple[tuple[FileResult, ...], list[dict[str, Any]]]:
    """Each manifest file's result in manifest order, and the record of the files quarantined whole."""
    reported = {result.identity: result for output in outputs for result in output.files}
    results, quarantined = [], []
    for file in manifest.files:
        result = reported.get(file.identity)
        if result is None:
            raise RuntimeError(f"manifest {manifest.manifest_id}: no task reported {file.identity}")
        if result.outcome == FileState.QUARANTINED:
            record = {"uri": file.uri, "identity": file.identity, "reason": result.reason}
            quarantined.append({**record, "manifest_id": manifest.manifest_id})
        results.append(result)
    return tuple(results), quarantined


def replace_output(storage: Storage, args: JobArguments, manifest: Manifest, publication: Publication) -> None:
    """Replace whatever an earlier attempt published with this attempt's files; then drop the staging prefix."""
    layout = args.layout
    stale_dts = {manifest.day} | {layout.dt_of(path) for path in publication.rows}
    previous = storage.read_bytes_if_exists(args.result_uri)
    if previous is not None:
        stale_dts |= previous_dts(previous)
        # The completion marker goes first, so nobody trusts the old result while files are replaced.
        storage.delete([args.result_uri])
    publish(storage, publication, layout, manifest, {dt for dt in stale_dts if dt})
    storage.delete_prefix(layout.staging_uri(manifest.manifest_id))

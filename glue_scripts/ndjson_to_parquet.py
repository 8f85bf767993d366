"""AWS Glue job: convert the NDJSON files of one batch manifest into date-partitioned Parquet.

Flow (see ``convert_manifest``):

1. load the manifest and the declared schema; check every file version is still
   the current one (a file whose eTag moved on is QUARANTINED as "superseded");
2. read each file whole (``binaryFile``), gunzip ``.gz`` files, decode UTF-8 and
   split into numbered lines; a file that cannot be decoded as a whole is
   quarantined as a file, the others still convert;
3. parse every line once against the declared schema (never inferred) and
   classify it: loaded, rescued (unknown fields or type mismatches kept in
   ``_rescued_data``; ``--read_mode rescue``), or quarantined with a reason;
4. write loaded rows and quarantined lines to a per-attempt staging prefix,
   publish them under names derived from the manifest id, delete this
   manifest's stale files, delete the staging prefix;
5. write the job result last. **The result object's presence is the completion
   marker**: the job deletes an earlier result before it touches published
   files, so a reader that sees a result sees the complete output it lists.

Output layout::

    <lake_root>/dt=YYYY-MM-DD/part-<manifest_id>-00000.<codec>.parquet
    <quarantine_root>/dt=<manifest day>/manifest=<manifest_id>/lines-00000.json
    <quarantine_root>/dt=<manifest day>/manifest=<manifest_id>/files.json

Rows go to output files by a hash of (source uri, line number), so a rerun puts
every row in the file of the same name as before: a rerun that dies half way
through publishing leaves old and new files that hold the same rows, never
duplicates. Invalid UTF-8: under ``strict`` a file with any invalid byte is
quarantined as a file; under ``rescue`` only its invalid lines are quarantined.
A file holding NUL bytes is binary and quarantined as a file in both modes.

Only ``ndjson_pipeline.manifest`` is imported from the project package, which
Glue receives as ``--extra-py-files``; ``awsglue`` is imported only by the
entry point, so everything else runs under plain pyspark.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
import re
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ndjson_pipeline.manifest import (
    FILE_DONE,
    FILE_QUARANTINED,
    FileResult,
    FileVersion,
    JobResult,
    Manifest,
    OutputFile,
    publish_log_uri,
)

log = logging.getLogger("ndjson_to_parquet")

MiB = 1024 * 1024
RESCUED_COLUMN = "_rescued_data"
LINEAGE_COLUMNS = ("_source_uri", "_manifest_id")
PARTITION_COLUMN = "dt"
# Internal columns; the double underscore keeps them apart from declared fields.
_CORRUPT = "__corrupt_record"
_FILE_INDEX = "__file_index"
RESERVED_COLUMNS = {RESCUED_COLUMN, *LINEAGE_COLUMNS, PARTITION_COLUMN, _CORRUPT, _FILE_INDEX}
CODEC_SUFFIX = {"snappy": ".snappy", "zstd": ".zstd", "gzip": ".gz", "none": ""}
# JSON whitespace plus form feed and vertical tab: a line of only these is blank, not data.
_BLANK_CHARS = " \t\r\n\f\x0b"

# Line statuses.
OK, RESCUED, QUARANTINED, FILE_LINE, BLANK, MARKER = "ok", "rescued", "quarantined", "file", "blank", "marker"


# --------------------------------------------------------------------------- arguments


class JobArgumentError(ValueError):
    """A job argument is missing or invalid; the message names the argument."""


REQUIRED_ARGUMENTS = ("manifest_uri", "result_uri", "lake_root", "quarantine_root", "schema_uri")
OPTIONAL_ARGUMENTS = {
    "read_mode": "rescue",
    "compression": "snappy",
    "partitioning": "arrival",
    "event_time_field": "event_time",
    "event_time_format": "iso8601",
    "target_file_mb": "128",
    "lineage": "true",
    "max_raw_chars": "10000",
    # Passed by the orchestration so it can find a manifest's runs; checked against the manifest when present.
    "manifest_id": "",
}


@dataclass(frozen=True)
class JobOptions:
    manifest_uri: str
    result_uri: str
    lake_root: str
    quarantine_root: str
    schema_uri: str
    read_mode: str = "rescue"
    compression: str = "snappy"
    partitioning: str = "arrival"
    event_time_field: str = "event_time"
    event_time_format: str = "iso8601"
    target_file_mb: float = 128.0
    lineage: bool = True
    max_raw_chars: int = 10000
    manifest_id: str | None = None


def parse_glue_argv(argv: list[str]) -> dict[str, str]:
    """Parse Glue-style ``--name value`` pairs, keeping every name (Glue adds system ones such as --JOB_NAME).

    A name followed by another ``--name`` (or by nothing) is a flag and reads as "true".
    """
    args: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if eq:
                i += 1
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 2
            else:
                value, i = "true", i + 1
            args[name] = value
        else:
            i += 1
    return args


def options_from_args(args: dict[str, str]) -> JobOptions:
    """Validate the job arguments; unknown names are ignored (Glue passes its own)."""
    missing = [f"--{name}" for name in REQUIRED_ARGUMENTS if not args.get(name)]
    if missing:
        raise JobArgumentError(f"missing required job argument(s): {', '.join(missing)}")
    merged = {**OPTIONAL_ARGUMENTS, **{k: v for k, v in args.items() if k in OPTIONAL_ARGUMENTS and v != ""}}

    def choice(name: str, allowed: Iterable[str]) -> str:
        value = merged[name].strip().lower()
        if value not in allowed:
            raise JobArgumentError(f"--{name} must be one of {sorted(allowed)}, not {merged[name]!r}")
        return value

    def number(name: str, kind: type, minimum: float) -> float:
        try:
            value = kind(merged[name])
        except ValueError:
            raise JobArgumentError(f"--{name} must be a number, not {merged[name]!r}") from None
        if not value >= minimum:
            raise JobArgumentError(f"--{name} must be at least {minimum}, not {merged[name]!r}")
        return value

    for name in ("manifest_uri", "result_uri"):
        if not args[name].endswith(".json"):
            raise JobArgumentError(f"--{name} must name a .json object, not {args[name]!r}")
    for name in ("lake_root", "quarantine_root"):
        if args[name].endswith("/"):
            raise JobArgumentError(f"--{name} must not end with '/': {args[name]!r}")
    event_time_field = merged["event_time_field"].strip()
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", event_time_field):
        raise JobArgumentError(f"--event_time_field must be a dotted field path, not {event_time_field!r}")
    return JobOptions(
        manifest_uri=args["manifest_uri"],
        result_uri=args["result_uri"],
        lake_root=args["lake_root"],
        quarantine_root=args["quarantine_root"],
        schema_uri=args["schema_uri"],
        read_mode=choice("read_mode", ("rescue", "strict")),
        compression=choice("compression", CODEC_SUFFIX),
        partitioning=choice("partitioning", ("arrival", "event_time")),
        event_time_field=event_time_field,
        event_time_format=merged["event_time_format"].strip() or "iso8601",
        target_file_mb=number("target_file_mb", float, 0.01),
        lineage=choice("lineage", ("true", "false")) == "true",
        max_raw_chars=int(number("max_raw_chars", int, 1)),
        manifest_id=merged["manifest_id"].strip() or None,
    )


def parse_schema(text: str, options: JobOptions) -> T.StructType:
    """The declared schema: the JSON of ``StructType.jsonValue()``, checked against the options."""
    try:
        schema = T.StructType.fromJson(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise JobArgumentError(f"--schema_uri {options.schema_uri} is not a Spark StructType JSON: {exc!r}") from exc
    clash = sorted(RESERVED_COLUMNS & set(schema.fieldNames()))
    if clash:
        raise JobArgumentError(f"--schema_uri {options.schema_uri} declares reserved column(s) {clash}")
    if options.partitioning == "event_time":
        field_type = _field_type(schema, options.event_time_field)
        if field_type is None:
            raise JobArgumentError(f"--event_time_field {options.event_time_field!r} is not in the declared schema")
        if not isinstance(field_type, T.StringType | T.TimestampType):
            raise JobArgumentError(
                f"--event_time_field {options.event_time_field!r} must be a string or timestamp, not {field_type}"
            )
    return schema


def _field_type(schema: T.StructType, dotted: str) -> T.DataType | None:
    current: T.DataType = schema
    for part in dotted.split("."):
        if not isinstance(current, T.StructType) or part not in current.fieldNames():
            return None
        current = current[part].dataType
    return current


# --------------------------------------------------------------------------- pure transforms


def gunzip_files(files: DataFrame) -> DataFrame:
    """(uri, content) of ``.gz`` files -> (uri, data, file_error), decompressed.

    The whole member is decompressed and its CRC checked, so a truncated or
    corrupt gzip becomes a file error instead of a silently ingested prefix (what
    ``ignoreCorruptFiles`` would do). Only ``.gz`` files cross into Python.
    """
    result = _gunzip_udf()(F.col("content"))
    return files.select("uri", result.alias("g")).select("uri", "g.data", F.col("g.error").alias("file_error"))


def plain_files(files: DataFrame) -> DataFrame:
    """(uri, content) of uncompressed files -> (uri, data, file_error), the shape ``gunzip_files`` gives."""
    return files.select("uri", F.col("content").alias("data"), F.lit(None).cast("string").alias("file_error"))


def _gunzip_udf():
    # Defined inside a function so Spark ships it by value: executors cannot import this script as a module.
    def gunzip(content: bytes | bytearray) -> tuple[bytes | None, str | None]:
        try:
            return gzip.decompress(bytes(content)), None
        except (EOFError, OSError, zlib.error) as exc:
            return None, f"undecodable gzip: {exc}"

    # A DataType, not a DDL string: parsing DDL needs a live SparkContext.
    return F.udf(gunzip, T.StructType([T.StructField("data", T.BinaryType()), T.StructField("error", T.StringType())]))


def decode_files(files: DataFrame, read_mode: str) -> DataFrame:
    """(uri, data, file_error) -> (uri, file_error, text, utf8_valid).

    ``text`` is the UTF-8 text of a valid file. A file with invalid UTF-8 keeps
    its bytes as ISO-8859-1 text (one char per byte, lossless) so its lines can
    still be counted and, under rescue, checked one by one. NUL bytes never
    occur in UTF-8 JSON text: they mark a binary file.
    """
    utf8 = F.decode("data", "UTF-8")
    decoded = files.select(
        "uri",
        "file_error",
        "data",
        utf8.alias("utf8_text"),
        (F.encode(utf8, "UTF-8") == F.col("data")).alias("utf8_valid"),
    )
    # Binary: any NUL byte, or invalid UTF-8 whose first 8 KB is over 10% replacement or control characters
    # (text in a legacy encoding has far fewer; rescue mode then checks such a file line by line).
    sample = F.substring("utf8_text", 1, 8192)
    odd_chars = F.length(F.regexp_replace(sample, r"[^\x{FFFD}\x01-\x08\x0B\x0C\x0E-\x1F]", ""))
    binary = (F.instr("utf8_text", "\x00") > 0) | (~F.col("utf8_valid") & (odd_chars * 10 > F.length(sample)))
    file_error = (
        F.when(F.col("file_error").isNotNull(), F.col("file_error"))
        .when(F.col("data").isNull(), F.lit("unreadable file"))
        .when(binary, F.lit("binary content (NUL bytes), not NDJSON text"))
        .when(~F.col("utf8_valid") & F.lit(read_mode == "strict"), F.lit("invalid UTF-8"))
    )
    text = F.when(F.col("utf8_valid"), F.col("utf8_text")).otherwise(F.decode("data", "ISO-8859-1"))
    # A leading byte-order mark is not part of the first record.
    text = F.when(text.startswith("\ufeff"), F.substr(text, F.lit(2))).otherwise(text)
    text = F.when(binary | F.col("data").isNull(), F.lit(None)).otherwise(text)
    return decoded.select("uri", file_error.alias("file_error"), text.alias("text"), "utf8_valid")


def split_lines(decoded: DataFrame) -> DataFrame:
    """(uri, file_error, text, utf8_valid) -> one row per line: (uri, file_error, line_number, line, utf8_ok).

    Every file also yields a marker row with line_number 0 and a null line, so a
    file with no lines (empty, or undecodable) still reports its outcome.
    """
    pieces = F.when(F.col("text").isNull(), F.array().cast("array<string>")).otherwise(F.split("text", "\n"))
    lines = decoded.select(
        "uri",
        "file_error",
        "utf8_valid",
        F.posexplode(F.concat(F.array(F.lit(None).cast("string")), pieces)).alias("line_number", "raw_line"),
    )
    # Lines of an invalid-UTF-8 file are ISO-8859-1 text: re-decode each and check it round-trips.
    latin1 = F.encode("raw_line", "ISO-8859-1")
    repaired = F.decode(latin1, "UTF-8")
    return lines.select(
        "uri",
        "file_error",
        "line_number",
        F.when(F.col("utf8_valid"), F.col("raw_line")).otherwise(repaired).alias("line"),
        (F.col("utf8_valid") | (F.encode(repaired, "UTF-8") == latin1)).alias("utf8_ok"),
    )


@dataclass(frozen=True)
class ParseSettings:
    schema: T.StructType
    read_mode: str
    partitioning: str
    day: str
    event_time_field: str = "event_time"
    event_time_format: str = "iso8601"
    max_raw_chars: int = 10000


def classify_lines(lines: DataFrame, settings: ParseSettings) -> DataFrame:
    """Parse each line once against the declared schema and give it a status, a reason and a dt.

    Output: uri, line_number, status, reason, raw (quarantined lines only, truncated),
    line_bytes, dt, rescued (rescue mode), then the declared fields.
    """
    schema = settings.schema
    names = schema.fieldNames()
    parse_schema_ = T.StructType([*schema.fields, T.StructField(_CORRUPT, T.StringType())])
    parse_options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
    blank = F.btrim("line", F.lit(_BLANK_CHARS)) == ""
    to_parse = F.col("line").isNotNull() & F.col("file_error").isNull() & F.col("utf8_ok") & ~blank
    staged = lines.select(
        "uri",
        "file_error",
        "line_number",
        "line",
        "utf8_ok",
        blank.alias("blank"),
        F.when(to_parse, F.from_json("line", parse_schema_, parse_options)).alias("p"),
        # Null exactly when the line is not one JSON object (malformed, array, scalar, null).
        F.when(to_parse, F.json_object_keys("line")).alias("keys"),
    )
    unknown = F.array_except("keys", F.array(*[F.lit(n) for n in names]))
    has_unknown = F.size(unknown) > 0
    corrupt = F.col(f"p.{_CORRUPT}").isNotNull()
    # Only rows with something to rescue pay for the extra top-level parse.
    raw_values = F.when(has_unknown | corrupt, F.from_json("line", T.MapType(T.StringType(), T.StringType())))
    staged = staged.select(
        "*", F.when(F.col("keys").isNotNull(), unknown).alias("unknown"), raw_values.alias("raw_values")
    )
    mismatched = F.when(
        corrupt,
        F.array_compact(F.array(*[F.when(_mismatch(f, F.col("raw_values")), F.lit(f.name)) for f in schema.fields])),
    ).otherwise(F.array().cast("array<string>"))
    staged = staged.select("*", mismatched.alias("mismatched"))
    rescue_map = F.map_filter(
        "raw_values", lambda k, _v: F.array_contains("unknown", k) | F.array_contains("mismatched", k)
    )
    rescued = (
        F.when(F.size(rescue_map) > 0, F.to_json(rescue_map))
        # The parser flagged the line but no top-level field stands out: keep the whole line.
        .when(corrupt, F.to_json(F.create_map(F.lit("_line"), F.col("line"))))
    )

    event_value, event_ts = _event_time(settings)
    if settings.partitioning == "event_time":
        dt = F.date_format(event_ts, "yyyy-MM-dd")
        event_problem = F.when(event_value.isNull(), F.lit(f"missing event time {settings.event_time_field}")).when(
            event_ts.isNull(),
            F.concat(F.lit(f"unparsable event time {settings.event_time_field}: "), event_value.cast("string")),
        )
    else:
        dt = F.lit(settings.day)
        event_problem = F.lit(None).cast("string")
    strict = settings.read_mode == "strict"
    not_object = F.col("keys").isNull()
    reason = (
        # The marker row carries the file's error, if any.
        F.when(F.col("line").isNull() | F.col("file_error").isNotNull(), F.col("file_error"))
        .when(F.col("blank"), F.lit(None))
        .when(~F.col("utf8_ok"), F.lit("invalid UTF-8"))
        .when(not_object, _not_object_reason(F.col("line")))
        .when(
            F.lit(strict) & (F.size("unknown") > 0),
            F.concat(F.lit("unknown fields: "), F.array_join(F.array_sort("unknown"), ", ")),
        )
        .when(
            F.lit(strict) & (F.size("mismatched") > 0),
            F.concat(F.lit("type mismatch: "), F.array_join("mismatched", ", ")),
        )
        .when(F.lit(strict) & corrupt, F.lit("type mismatch"))
        .otherwise(event_problem)
    )
    status = (
        F.when(F.col("line").isNull(), F.lit(MARKER))
        .when(F.col("blank"), F.lit(BLANK))
        .when(F.col("file_error").isNotNull(), F.lit(FILE_LINE))
        .when(F.col("reason").isNotNull(), F.lit(QUARANTINED))
        .when(F.col("rescued").isNotNull(), F.lit(RESCUED))
        .otherwise(F.lit(OK))
    )
    classified = staged.select(
        "uri",
        "line_number",
        "line",
        "p",
        "file_error",
        "blank",
        reason.alias("reason"),
        (F.lit(None).cast("string") if strict else rescued).alias("rescued"),
        dt.alias("dt"),
    )
    return classified.select(
        "uri",
        "line_number",
        status.alias("status"),
        "reason",
        F.when(
            F.col("reason").isNotNull() & F.col("file_error").isNull(), F.substring("line", 1, settings.max_raw_chars)
        ).alias("raw"),
        F.octet_length("line").alias("line_bytes"),
        F.when(F.col("reason").isNull(), F.col("dt")).alias("dt"),
        "rescued",
        *[F.col(f"p.{n}").alias(n) for n in names],
    )


def _mismatch(field: T.StructField, raw_values: Column) -> Column:
    """True when the line's value for a top-level field does not fit the field's declared type."""
    raw = raw_values.getItem(field.name)
    parsed = F.col(f"p.{field.name}")
    # The declared parse nulls a field whose value does not fit...
    nulled = parsed.isNull() & raw.isNotNull()
    if not isinstance(field.dataType, T.StructType | T.ArrayType | T.MapType):
        return nulled
    # ...but keeps a struct or array whose inner values partly failed: re-parse just that value to find out.
    probe_schema = T.StructType([T.StructField("v", field.dataType), T.StructField(_CORRUPT, T.StringType())])
    probe = F.from_json(
        F.concat(F.lit('{"v":'), raw, F.lit("}")), probe_schema, {"columnNameOfCorruptRecord": _CORRUPT}
    )
    return nulled | (raw.isNotNull() & probe.getField(_CORRUPT).isNotNull())


def _not_object_reason(line: Column) -> Column:
    as_array = F.json_array_length(line)
    single = F.from_json(F.concat(F.lit("["), line, F.lit("]")), T.ArrayType(T.StringType()))
    return (
        F.when(as_array.isNotNull(), F.lit("not a JSON object: array"))
        .when(F.size(single) == 1, F.lit("not a JSON object: scalar or null"))
        .otherwise(F.lit("malformed JSON"))
    )


def _event_time(settings: ParseSettings) -> tuple[Column, Column]:
    value = F.col("p." + settings.event_time_field)
    if isinstance(_field_type(settings.schema, settings.event_time_field), T.TimestampType):
        return value, value
    if settings.event_time_format.lower() == "iso8601":
        return value, F.try_to_timestamp(value)
    return value, F.try_to_timestamp(value, F.lit(settings.event_time_format))


def summarise_lines(classified: DataFrame) -> DataFrame:
    """Lines and input bytes per (file, status, dt), with each file's error: one small aggregate for the driver."""
    return classified.groupBy("uri", "status", "dt").agg(
        F.count("*").alias("lines"),
        F.sum("line_bytes").alias("bytes"),
        F.max(F.when(F.col("status") == MARKER, F.col("reason"))).alias("file_error"),
    )


def outcomes_from_summary(summary: Iterable) -> tuple[dict[str, dict], dict[str, int]]:
    """Per file: file_error and row counts (blank lines are not rows); per dt: input bytes of loaded rows."""
    outcomes: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    for row in summary:
        o = outcomes.setdefault(
            row["uri"],
            {"file_error": None, "rows_in": 0, "rows_out": 0, "rows_rescued": 0, "rows_quarantined": 0},
        )
        status, lines = row["status"], row["lines"]
        if status == MARKER:
            o["file_error"] = row["file_error"]
        if status in (OK, RESCUED, QUARANTINED, FILE_LINE):
            o["rows_in"] += lines
        if status in (OK, RESCUED):
            o["rows_out"] += lines
            sizes[row["dt"]] = sizes.get(row["dt"], 0) + row["bytes"]
        if status == RESCUED:
            o["rows_rescued"] += lines
        if status in (QUARANTINED, FILE_LINE):
            o["rows_quarantined"] += lines
    return outcomes, sizes


def loaded_rows(
    classified: DataFrame, schema: T.StructType, *, read_mode: str, lineage: bool, manifest_id: str
) -> DataFrame:
    """The rows to publish: declared fields, then _rescued_data, then lineage, then dt and the row's position."""
    columns = [F.col(n) for n in schema.fieldNames()]
    if read_mode == "rescue":
        columns.append(F.col("rescued").alias(RESCUED_COLUMN))
    if lineage:
        columns += [F.col("uri").alias("_source_uri"), F.lit(manifest_id).alias("_manifest_id")]
    loaded = classified.where(F.col("status").isin(OK, RESCUED))
    return loaded.select(*columns, PARTITION_COLUMN, F.col("uri").alias("__uri"), F.col("line_number").alias("__line"))


def assign_output_files(rows: DataFrame, files_per_dt: dict[str, int]) -> DataFrame:
    """Give each row the index of its output file within its dt, from a hash of its source position.

    The same line always lands in the same file, whatever the attempt.
    """
    if len(set(files_per_dt.values()) | {1}) == 1:
        count = F.lit(1)
    else:
        pairs = [item for dt, n in sorted(files_per_dt.items()) for item in (F.lit(dt), F.lit(n))]
        count = F.coalesce(F.element_at(F.create_map(*pairs), F.col(PARTITION_COLUMN)), F.lit(1))
    index = F.pmod(F.xxhash64("__uri", "__line"), count.cast("long")).cast("int")
    return rows.withColumn(_FILE_INDEX, index).drop("__uri", "__line")


def quarantined_lines(classified: DataFrame, manifest_id: str) -> DataFrame:
    """Quarantined lines as they are written: uri, line_number, raw (truncated), reason, manifest_id."""
    return classified.where(F.col("status") == QUARANTINED).select(
        "uri", "line_number", "raw", "reason", F.lit(manifest_id).alias("manifest_id")
    )


def files_for_size(total_bytes: int, target_file_mb: float) -> int:
    """How many output files a partition of ``total_bytes`` input gets; input bytes over-estimate Parquet size."""
    return max(1, math.ceil(total_bytes / (target_file_mb * MiB)))


# --------------------------------------------------------------------------- storage


class Storage:
    """File-level operations on ``s3://`` URIs (boto3) and local paths, and the paths Spark should use.

    ``bucket_root`` maps ``s3://bucket/key`` to ``<bucket_root>/bucket/key`` on the local
    disk; the benchmark and the transform tests use it to run the whole job without S3.
    ``spark_s3_scheme`` is ``s3`` on Glue and ``s3a`` for Spark outside Glue.
    """

    def __init__(self, *, spark_s3_scheme: str = "s3", bucket_root: str | None = None, s3_client=None) -> None:
        self.spark_s3_scheme = spark_s3_scheme
        self.bucket_root = bucket_root
        self._s3 = s3_client

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            # boto3 honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which the local runner sets.
            self._s3 = boto3.client("s3")
        return self._s3

    def _s3_location(self, uri: str) -> tuple[str, str] | None:
        if self.bucket_root is not None or not uri.startswith("s3://"):
            return None
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _local(self, uri: str) -> Path:
        if uri.startswith("s3://"):
            if self.bucket_root is None:
                raise ValueError(f"{uri} is not a local path")
            parsed = urlparse(uri)
            return Path(self.bucket_root) / parsed.netloc / parsed.path.lstrip("/")
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def spark_path(self, uri: str) -> str:
        """The path Spark reads or writes for ``uri``: ``s3://`` becomes ``s3a://`` outside Glue."""
        location = self._s3_location(uri)
        if location:
            return f"{self.spark_s3_scheme}://{location[0]}/{location[1]}"
        return str(self._local(uri).absolute())

    def current_etag(self, file: FileVersion) -> str | None:
        """The eTag of the object's current version, or None when it is gone or is not ``file``'s version."""
        location = self._s3_location(file.uri)
        if location is None:
            path = self._local(file.uri)
            return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() if path.is_file() else None
        try:
            head = self.s3.head_object(Bucket=location[0], Key=location[1])
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        # Spark reads the current version, so a newer version (even with the old one still kept) supersedes it.
        if file.version_id and head.get("VersionId") != file.version_id:
            return None
        return head["ETag"].strip('"')

    def read_bytes(self, uri: str) -> bytes:
        location = self._s3_location(uri)
        if location is None:
            return self._local(uri).read_bytes()
        return self.s3.get_object(Bucket=location[0], Key=location[1])["Body"].read()

    def read_bytes_if_exists(self, uri: str) -> bytes | None:
        try:
            return self.read_bytes(uri)
        except FileNotFoundError:
            return None
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def write_bytes(self, uri: str, data: bytes) -> None:
        location = self._s3_location(uri)
        if location is None:
            path = self._local(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            partial.write_bytes(data)
            partial.replace(path)
            return
        self.s3.put_object(Bucket=location[0], Key=location[1], Body=data)

    def list(self, prefix: str) -> dict[str, int]:
        """URIs (in the form of ``prefix``) and sizes of the objects whose names start with ``prefix``.

        Hidden local files (Hadoop's ``.crc`` files, partial copies) are skipped.
        """
        location = self._s3_location(prefix)
        if location is None:
            local = self._local(prefix)
            base, start = (local, "") if prefix.endswith("/") else (local.parent, local.name)
            uri_base = prefix[: len(prefix) - len(start)]
            found = {}
            for path in sorted(base.rglob("*")) if base.is_dir() else ():
                relative = path.relative_to(base).as_posix()
                hidden = any(part.startswith(".") for part in relative.split("/"))
                if relative.startswith(start) and not hidden and path.is_file():
                    found[uri_base + relative] = path.stat().st_size
            return found
        bucket, key_prefix = location
        found = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
            for obj in page.get("Contents", []):
                found[f"s3://{bucket}/{obj['Key']}"] = obj["Size"]
        return found

    def copy(self, source: str, target: str) -> None:
        src, dst = self._s3_location(source), self._s3_location(target)
        if src is None and dst is None:
            path = self._local(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            shutil.copyfile(self._local(source), partial)
            partial.replace(path)
        elif src and dst:
            # The managed copy switches to multipart above 5 GB, where CopyObject stops working.
            self.s3.copy({"Bucket": src[0], "Key": src[1]}, dst[0], dst[1])
        else:
            raise ValueError(f"cannot copy between S3 and the local disk: {source} -> {target}")

    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            location = self._s3_location(uri)
            if location is None:
                self._local(uri).unlink(missing_ok=True)
            else:
                by_bucket.setdefault(location[0], []).append(location[1])
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                objects = [{"Key": key} for key in keys[start : start + 1000]]
                response = self.s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
                if response.get("Errors"):
                    raise RuntimeError(f"could not delete from s3://{bucket}: {response['Errors'][:5]}")

    def delete_prefix(self, prefix: str) -> None:
        location = self._s3_location(prefix)
        if location is None:
            shutil.rmtree(self._local(prefix), ignore_errors=True)
        else:
            self.delete(self.list(prefix.rstrip("/") + "/"))


# --------------------------------------------------------------------------- load / save


def load_manifest(storage: Storage, options: JobOptions) -> Manifest:
    return Manifest.from_json(storage.read_bytes(options.manifest_uri))


def load_schema(storage: Storage, options: JobOptions) -> T.StructType:
    return parse_schema(storage.read_bytes(options.schema_uri).decode("utf-8"), options)


def check_versions(storage: Storage, files: Iterable[FileVersion]) -> dict[str, str]:
    """Identity -> "superseded ..." reason for each file version that is no longer the current object."""
    superseded = {}
    for file in files:
        etag = storage.current_etag(file)
        if etag != file.etag:
            now = "is gone" if etag is None else f"now has eTag {etag}"
            superseded[file.identity] = f"superseded: {file.uri} {now}, not {file.etag}"
    return superseded


def load_files(spark: SparkSession, storage: Storage, files: list[FileVersion]) -> DataFrame:
    """(uri, content) of each file, whole; uri is the manifest's ``s3://`` URI whatever path Spark used."""
    spark_paths = {storage.spark_path(f.uri): f.uri for f in files}
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    qualified = {}
    for path, uri in spark_paths.items():
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        qualified[hadoop_path.getFileSystem(hadoop_conf).makeQualified(hadoop_path).toString()] = uri
    raw = spark.read.format("binaryFile").load([_escape_glob(p) for p in spark_paths])
    uri_of = F.create_map(*[F.lit(x) for pair in sorted(qualified.items()) for x in pair])
    return raw.select(F.element_at(uri_of, F.col("path")).alias("uri"), "content")


def _escape_glob(path: str) -> str:
    # Spark globs load() paths; a key holding glob characters must still name just itself.
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", path)


def save_rows(rows: DataFrame, storage: Storage, staging: str, total_files: int, compression: str) -> None:
    """Write loaded rows under ``staging``, all rows of one output file in one Spark task (so one file)."""
    grouped = (
        rows.coalesce(1)
        if total_files == 1
        else rows.repartition(total_files, F.col(PARTITION_COLUMN), F.col(_FILE_INDEX))
    )
    grouped.write.mode("overwrite").option("compression", compression).partitionBy(
        PARTITION_COLUMN, _FILE_INDEX
    ).parquet(storage.spark_path(f"{staging}/data"))


def load_staged_row_counts(spark: SparkSession, storage: Storage, staging: str) -> dict[tuple[str, int], int]:
    """Rows per staged (dt, file index), read back from what was written (Parquet footers only)."""
    written = spark.read.parquet(storage.spark_path(f"{staging}/data"))
    counts = written.groupBy(F.col(PARTITION_COLUMN).cast("string"), _FILE_INDEX).count().collect()
    return {(row[0], row[1]): row[2] for row in counts}


def save_quarantined_lines(bad_lines: DataFrame, storage: Storage, staging: str) -> None:
    bad_lines.coalesce(1).sortWithinPartitions("uri", "line_number").write.mode("overwrite").json(
        storage.spark_path(f"{staging}/quarantine")
    )


@dataclass(frozen=True)
class Publication:
    """What one attempt publishes: final URI -> staged URI, and the stale candidates' prefixes."""

    copies: dict[str, str]
    rows: dict[str, int]
    sizes: dict[str, int]
    files_record: bytes | None


def plan_publication(
    storage: Storage,
    staging: str,
    options: JobOptions,
    manifest: Manifest,
    rows_per_file: dict[tuple[str, int], int],
    quarantined_files: list[dict],
) -> Publication:
    staged = storage.list(f"{staging}/data/")
    copies, rows, sizes = {}, {}, {}
    suffix = CODEC_SUFFIX[options.compression]
    seen: set[tuple[str, int]] = set()
    for uri, size in sorted(staged.items()):
        match = re.search(rf"/{PARTITION_COLUMN}=([^/]+)/{_FILE_INDEX}=(\d+)/[^/]+\.parquet$", uri)
        if not match:
            continue
        key = (match.group(1), int(match.group(2)))
        if key in seen:
            raise RuntimeError(f"more than one staged file for dt={key[0]} file {key[1]} under {staging}")
        seen.add(key)
        final = (
            f"{options.lake_root}/{PARTITION_COLUMN}={key[0]}/part-{manifest.manifest_id}-{key[1]:05d}{suffix}.parquet"
        )
        copies[final], rows[final], sizes[final] = uri, rows_per_file.get(key, 0), size
    if seen != set(rows_per_file):
        raise RuntimeError(f"staged files {sorted(seen)} do not match the rows written {sorted(rows_per_file)}")
    quarantine_prefix = quarantine_location(options, manifest)
    staged_lines = [
        uri for uri in sorted(storage.list(f"{staging}/quarantine/")) if re.search(r"/part-[^/]*\.json$", uri)
    ]
    for n, uri in enumerate(staged_lines):
        copies[f"{quarantine_prefix}/lines-{n:05d}.json"] = uri
    record = (
        "".join(json.dumps(f, sort_keys=True) + "\n" for f in quarantined_files).encode() if quarantined_files else None
    )
    return Publication(copies=copies, rows=rows, sizes=sizes, files_record=record)


def quarantine_location(options: JobOptions, manifest: Manifest) -> str:
    return f"{options.quarantine_root}/dt={manifest.day}/manifest={manifest.manifest_id}"


def publish(
    storage: Storage, publication: Publication, options: JobOptions, manifest: Manifest, stale_dts: set[str]
) -> None:
    """Copy staged files to their final names, then delete this manifest's files that are not in the new set.

    Only names carrying this manifest's id are ever deleted, so other manifests' files are never touched.
    Before the first copy, the publish log lists every object this and earlier attempts published, so a
    compensation that gives up on the manifest can remove partial output wherever it landed.
    """
    quarantine_prefix = quarantine_location(options, manifest)
    keep = set(publication.copies)
    if publication.files_record is not None:
        keep.add(f"{quarantine_prefix}/files.json")
    log_uri = publish_log_uri(options.result_uri)
    earlier = storage.read_bytes_if_exists(log_uri)
    logged = set(json.loads(earlier)["uris"]) if earlier else set()
    storage.write_bytes(log_uri, json.dumps({"uris": sorted(logged | keep)}).encode())
    for final, staged in sorted(publication.copies.items()):
        storage.copy(staged, final)
    if publication.files_record is not None:
        storage.write_bytes(f"{quarantine_prefix}/files.json", publication.files_record)
    existing: dict[str, int] = {uri: 0 for uri in logged}
    for dt in sorted(stale_dts):
        existing |= storage.list(f"{options.lake_root}/{PARTITION_COLUMN}={dt}/part-{manifest.manifest_id}-")
    existing |= storage.list(f"{quarantine_prefix}/")
    stale = sorted(set(existing) - keep)
    if stale:
        log.info("deleting %s stale file(s) of manifest %s", len(stale), manifest.manifest_id)
        storage.delete(stale)
    storage.write_bytes(log_uri, json.dumps({"uris": sorted(keep)}).encode())


# --------------------------------------------------------------------------- the job


def configure_session(spark: SparkSession, input_bytes: int) -> None:
    """Session settings the job's semantics and speed rely on, whatever the cluster defaults are."""
    parallelism = max(spark.sparkContext.defaultParallelism, 1)
    conf = {
        # Day boundaries of event times are UTC days.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        # Keep from_json parsing the whole declared schema: type mismatches must be seen even in unused fields.
        "spark.sql.optimizer.enableJsonExpressionOptimization": "false",
        "spark.sql.json.enablePartialResults": "true",
        # Whole-file reads: about four tasks per core balance the cores without tiny tasks.
        "spark.sql.files.maxPartitionBytes": str(max(MiB, min(128 * MiB, input_bytes // (4 * parallelism) or 1))),
        "spark.sql.files.openCostInBytes": str(64 * 1024),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # HotSpot does not JIT methods over 8000 bytes of bytecode: split generated code below that.
        "spark.sql.codegen.hugeMethodLimit": "8000",
    }
    for key, value in conf.items():
        spark.conf.set(key, value)


def convert_manifest(
    spark: SparkSession, options: JobOptions, storage: Storage, *, attempt: str | None = None
) -> JobResult:
    """Convert one manifest end to end and write its result; return the result."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    manifest = load_manifest(storage, options)
    if options.manifest_id and options.manifest_id != manifest.manifest_id:
        raise JobArgumentError(
            f"--manifest_id {options.manifest_id} does not match {options.manifest_uri} ({manifest.manifest_id})"
        )
    schema = load_schema(storage, options)
    superseded = check_versions(storage, manifest.files)
    readable = [f for f in manifest.files if f.identity not in superseded]
    timings["check_versions_s"] = time.monotonic() - started
    configure_session(spark, sum(f.size for f in readable))
    attempt = attempt or uuid.uuid4().hex
    staging = f"{options.lake_root}/_staging/{manifest.manifest_id}/{attempt}"
    settings = ParseSettings(
        schema=schema,
        read_mode=options.read_mode,
        partitioning=options.partitioning,
        day=manifest.day,
        event_time_field=options.event_time_field,
        event_time_format=options.event_time_format,
        max_raw_chars=options.max_raw_chars,
    )

    outcomes: dict[str, dict] = {}
    rows_per_file: dict[tuple[str, int], int] = {}
    output_schema = _output_schema(schema, options)
    if readable:
        step = time.monotonic()
        plain = [f for f in readable if not f.key.lower().endswith(".gz")]
        gz = [f for f in readable if f.key.lower().endswith(".gz")]
        # Separate scans: uncompressed files never pass through the Python gunzip step.
        parts = [plain_files(load_files(spark, storage, plain))] if plain else []
        parts += [gunzip_files(load_files(spark, storage, gz))] if gz else []
        files = functools.reduce(DataFrame.unionByName, parts)
        classified = classify_lines(split_lines(decode_files(files, options.read_mode)), settings)
        # Parse once: the counts, the loaded rows and the quarantined lines all come from this cache.
        classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            outcomes, sizes = outcomes_from_summary(summarise_lines(classified).collect())
            timings["read_parse_s"] = time.monotonic() - step
            step = time.monotonic()
            files_per_dt = {dt: files_for_size(size, options.target_file_mb) for dt, size in sizes.items()}
            rows = assign_output_files(
                loaded_rows(
                    classified,
                    schema,
                    read_mode=options.read_mode,
                    lineage=options.lineage,
                    manifest_id=manifest.manifest_id,
                ),
                files_per_dt,
            )
            output_schema = rows.drop(PARTITION_COLUMN, _FILE_INDEX).schema
            if sizes:
                save_rows(rows, storage, staging, sum(files_per_dt.values()), options.compression)
                rows_per_file = load_staged_row_counts(spark, storage, staging)
            if any(o["rows_quarantined"] and o["file_error"] is None for o in outcomes.values()):
                save_quarantined_lines(quarantined_lines(classified, manifest.manifest_id), storage, staging)
            timings["write_s"] = time.monotonic() - step
        finally:
            classified.unpersist()

    results, quarantined_files = _file_results(manifest, superseded, outcomes)
    step = time.monotonic()
    publication = plan_publication(storage, staging, options, manifest, rows_per_file, quarantined_files)
    # A file that changed while it was read must not be reported as converted: fail, and the rerun will
    # see it as superseded.
    changed = sorted(set(check_versions(storage, readable)))
    if changed:
        raise RuntimeError(f"manifest {manifest.manifest_id}: file(s) changed while being converted: {changed}")
    output_files = tuple(
        OutputFile(path=path, bytes=publication.sizes[path], rows=publication.rows[path])
        for path in sorted(publication.rows)
    )
    result = JobResult(
        manifest_id=manifest.manifest_id,
        day=manifest.day,
        files=results,
        output_files=output_files,
        schema=output_schema.jsonValue(),
        timings=timings,
    )
    result.check_reconciled(manifest)

    previous = storage.read_bytes_if_exists(options.result_uri)
    stale_dts = {manifest.day} | {path.split(f"/{PARTITION_COLUMN}=")[1].split("/")[0] for path in publication.rows}
    if previous is not None:
        stale_dts |= _previous_dts(previous)
        # The completion marker goes first, so nobody trusts the old result while files are replaced.
        storage.delete([options.result_uri])
    publish(storage, publication, options, manifest, stale_dts)
    storage.delete_prefix(f"{options.lake_root}/_staging/{manifest.manifest_id}")
    timings["publish_s"] = time.monotonic() - step
    timings["total_s"] = time.monotonic() - started
    result = replace(result, timings={k: round(v, 3) for k, v in timings.items()})
    storage.write_bytes(options.result_uri, result.to_json().encode())
    log.info(
        "manifest %s: %s rows in, %s out, %s rescued, %s quarantined, %s output file(s)",
        manifest.manifest_id,
        result.rows_in,
        result.rows_out,
        result.rows_rescued,
        result.rows_quarantined,
        len(output_files),
    )
    return result


def _output_schema(schema: T.StructType, options: JobOptions) -> T.StructType:
    fields = [T.StructField(f.name, f.dataType, True) for f in schema.fields]
    if options.read_mode == "rescue":
        fields.append(T.StructField(RESCUED_COLUMN, T.StringType()))
    if options.lineage:
        fields += [T.StructField(name, T.StringType(), name != "_source_uri") for name in LINEAGE_COLUMNS]
    return T.StructType(fields)


def _previous_dts(previous: bytes) -> set[str]:
    try:
        paths = [f["path"] for f in json.loads(previous).get("output_files", [])]
    except (ValueError, AttributeError, TypeError):
        return set()
    return {p.split(f"/{PARTITION_COLUMN}=")[1].split("/")[0] for p in paths if f"/{PARTITION_COLUMN}=" in p}


def _file_results(
    manifest: Manifest, superseded: dict[str, str], outcomes: dict[str, dict]
) -> tuple[tuple[FileResult, ...], list[dict]]:
    results, quarantined = [], []
    for file in manifest.files:
        if file.identity in superseded:
            result = FileResult(file.identity, file.uri, FILE_QUARANTINED, reason=superseded[file.identity])
        elif file.uri not in outcomes and file.size == 0:
            # Spark's file scan skips zero-byte files: an empty file is done, with no rows.
            result = FileResult(file.identity, file.uri, FILE_DONE)
        elif file.uri not in outcomes:
            raise RuntimeError(f"manifest {manifest.manifest_id}: Spark did not read {file.uri}")
        else:
            o = outcomes[file.uri]
            if o["file_error"] is not None:
                result = FileResult(
                    file.identity,
                    file.uri,
                    FILE_QUARANTINED,
                    reason=o["file_error"],
                    rows_in=o["rows_in"],
                    rows_quarantined=o["rows_quarantined"],
                )
            else:
                result = FileResult(
                    file.identity,
                    file.uri,
                    FILE_DONE,
                    rows_in=o["rows_in"],
                    rows_out=o["rows_out"],
                    rows_rescued=o["rows_rescued"],
                    rows_quarantined=o["rows_quarantined"],
                )
        if result.outcome == FILE_QUARANTINED:
            quarantined.append(
                {
                    "uri": file.uri,
                    "identity": file.identity,
                    "reason": result.reason,
                    "manifest_id": manifest.manifest_id,
                }
            )
        results.append(result)
    return tuple(results), quarantined


# --------------------------------------------------------------------------- entry point


def main(argv: list[str]) -> JobResult:
    """Run the job: on Glue through GlueContext and getResolvedOptions, elsewhere with a plain SparkSession."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from awsglue.context import GlueContext
        from awsglue.utils import getResolvedOptions
    except ImportError:
        args = parse_glue_argv(argv)
        spark = SparkSession.builder.appName("ndjson_to_parquet").getOrCreate()
        storage = Storage(spark_s3_scheme="s3a")
    else:
        from pyspark.context import SparkContext

        # getResolvedOptions fails on absent names, so ask only for the optional ones that were passed.
        present = [n for n in OPTIONAL_ARGUMENTS if f"--{n}" in argv]
        missing = [f"--{n}" for n in REQUIRED_ARGUMENTS if f"--{n}" not in argv]
        if missing:
            raise JobArgumentError(f"missing required job argument(s): {', '.join(missing)}")
        args = getResolvedOptions(argv, [*REQUIRED_ARGUMENTS, *present])
        spark = GlueContext(SparkContext.getOrCreate()).spark_session
        storage = Storage(spark_s3_scheme="s3")
    options = options_from_args(args)
    return convert_manifest(spark, options, storage)


if __name__ == "__main__":
    main(sys.argv)

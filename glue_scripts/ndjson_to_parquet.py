"""AWS Glue job: convert the NDJSON files of one batch manifest into date-partitioned Parquet.

Flow (see ``convert_manifest``):

1. load the manifest and the declared schema; split the files into output
   groups of about ``--target_file_mb`` of input each;
2. one Spark task per group (``convert_group``) reads each file whole, only if
   it still has the manifest's eTag (otherwise the file is QUARANTINED as
   "superseded"), gunzips ``.gz`` files and checks the bytes: a file that cannot
   be decoded as a whole is quarantined as a file, the others still convert;
3. every line is parsed once against the declared schema (never inferred) by
   Arrow's JSON reader; the few lines it refuses are looked at one by one
   (``classify_line``) and loaded, rescued (unknown fields or type mismatches
   kept in ``_rescued_data``; ``--read_mode rescue``) or quarantined with their
   line number and a reason;
4. the task writes its group's rows as one Parquet file per dt, and its
   quarantined lines, to a per-attempt staging prefix;
5. the driver publishes staged files under names derived from the manifest id,
   deletes this manifest's stale files and the staging prefix, and writes the
   job result last. **The result object's presence is the completion marker**:
   the job deletes an earlier result before it touches published files, so a
   reader that sees a result sees the complete output it lists.

Output layout::

    <lake_root>/<dataset>/dt=YYYY-MM-DD/part-<manifest_id>-<group><codec>.parquet
    <quarantine_root>/<dataset>/dt=<manifest day>/manifest=<manifest_id>/lines-00000.json
    <quarantine_root>/<dataset>/dt=<manifest day>/manifest=<manifest_id>/files.json

(every name comes from ``ndjson_pipeline.layout.LakeLayout``)

Groups depend only on the manifest and ``--target_file_mb``, so every attempt
writes each row into the file of the same name: a rerun that dies half way through publishing leaves old
and new files holding the same rows, never duplicates.

Spark distributes the groups; the per-line work runs in Arrow's C++ JSON reader
and Parquet writer, several times faster than Spark's JSON scan on this data
(see benchmarks/glue_job_benchmark.py). Only ``ndjson_pipeline.manifest`` is
imported from the project package (the driver needs it; Glue ships it as
``--extra-py-files``); ``awsglue`` is imported only by the entry point.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import logging
import math
import re
import sys
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from ndjson_pipeline.conversion import (
    ConversionOptions,
    JobArguments,
    OptionError,
    Partitioning,
    ReadMode,
)
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.layout import PARTITION_COLUMN, LakeLayout, PublishLog
from ndjson_pipeline.manifest import FileResult, JobResult, Manifest, OutputFile
from ndjson_pipeline.storage import Storage
from ndjson_pipeline.usage import RequestRecorder, Usage, write_usage

log = logging.getLogger("ndjson_to_parquet")

MiB = 1024 * 1024
RESCUED_COLUMN = "_rescued_data"
LINEAGE_COLUMNS = ("_source_uri", "_manifest_id")
RESERVED_COLUMNS = {RESCUED_COLUMN, *LINEAGE_COLUMNS, PARTITION_COLUMN}
# JSON whitespace plus form feed and vertical tab: a line of only these is blank, not data.
_BLANK_BYTES = b" \t\r\n\f\x0b"


# --------------------------------------------------------------------------- arguments


class JobArgumentError(ValueError):
    """A job argument is missing or invalid, or disagrees with the manifest or schema; the message names it."""


def job_arguments(argv: list[str]) -> JobArguments:
    try:
        return JobArguments.from_argv(argv)
    except OptionError as exc:
        raise JobArgumentError(str(exc)) from exc


_ARROW_TYPES = {
    T.StringType: pa.string(),
    T.LongType: pa.int64(),
    T.IntegerType: pa.int32(),
    T.ShortType: pa.int16(),
    T.ByteType: pa.int8(),
    # No float: Arrow turns a value beyond float32's range into inf instead of refusing it.
    T.DoubleType: pa.float64(),
    T.BooleanType: pa.bool_(),
}


def parse_schema(text: str, args: JobArguments) -> T.StructType:
    """The declared schema: the JSON of ``StructType.jsonValue()``, checked against the options."""
    try:
        schema = T.StructType.fromJson(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise JobArgumentError(f"--schema_uri {args.schema_uri} is not a Spark StructType JSON: {exc!r}") from exc
    clash = sorted(RESERVED_COLUMNS & set(schema.fieldNames()))
    if clash:
        raise JobArgumentError(f"--schema_uri {args.schema_uri} declares reserved column(s) {clash}")
    try:
        arrow_type(schema)
    except TypeError as exc:
        raise JobArgumentError(f"--schema_uri {args.schema_uri}: {exc}") from None
    options = args.options
    if options.partitioning == Partitioning.EVENT_TIME:
        field_type = _field_type(schema, options.event_time_field)
        if field_type is None:
            raise JobArgumentError(f"--event_time_field {options.event_time_field!r} is not in the declared schema")
        if not isinstance(field_type, T.StringType):
            raise JobArgumentError(
                f"--event_time_field {options.event_time_field!r} must be a string, not {field_type.simpleString()}"
            )
    return schema


def arrow_type(spark_type: T.DataType, path: str = "") -> pa.DataType:
    """The Arrow type a declared Spark type is read as; TypeError names a field whose type is not supported."""
    if isinstance(spark_type, T.StructType):
        return pa.struct(
            [pa.field(f.name, arrow_type(f.dataType, f"{path}{f.name}."), nullable=True) for f in spark_type.fields]
        )
    if isinstance(spark_type, T.ArrayType):
        return pa.list_(arrow_type(spark_type.elementType, path))
    for kind, arrow in _ARROW_TYPES.items():
        if isinstance(spark_type, kind):
            return arrow
    supported = "struct, array, " + ", ".join(kind().simpleString() for kind in _ARROW_TYPES)
    raise TypeError(f"field {path.rstrip('.')!r} has type {spark_type.simpleString()}; supported: {supported}")


def _field_type(schema: T.StructType, dotted: str) -> T.DataType | None:
    current: T.DataType = schema
    for part in dotted.split("."):
        if not isinstance(current, T.StructType) or part not in current.fieldNames():
            return None
        current = current[part].dataType
    return current


# --------------------------------------------------------------------------- lines and files (pyarrow only)


@dataclass(frozen=True)
class LineRules:
    """How lines become rows: everything a task needs besides the files themselves."""

    schema: pa.Schema  # the declared fields, as Arrow reads them
    day: str
    options: ConversionOptions = field(default_factory=ConversionOptions)

    @property
    def read_mode(self) -> ReadMode:
        return self.options.read_mode

    @property
    def row_schema(self) -> pa.Schema:
        """The declared fields, then ``_rescued_data`` in rescue mode."""
        if self.read_mode == ReadMode.RESCUE:
            return self.schema.append(pa.field(RESCUED_COLUMN, pa.string()))
        return self.schema


@dataclass
class FileRows:
    """What one file gave: its rows (``row_schema`` plus dt), its quarantined lines and its counts."""

    uri: str
    rows: pa.Table | None = None
    bad_lines: list[dict] = field(default_factory=list)
    file_error: str | None = None
    rows_in: int = 0
    rows_rescued: int = 0

    @property
    def rows_out(self) -> int:
        return 0 if self.rows is None else self.rows.num_rows

    def outcome(self) -> dict:
        """The fields of the file's ``FileResult`` (the tasks leave the manifest classes to the driver)."""
        return {
            "outcome": FileState.DONE if self.file_error is None else FileState.QUARANTINED,
            "reason": self.file_error,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_rescued": self.rows_rescued,
            "rows_quarantined": self.rows_in - self.rows_out,
        }


def gunzip(data: bytes) -> tuple[bytes | None, str | None]:
    """The whole gzip member, CRC checked: a truncated or corrupt file is an error, never a silent prefix."""
    try:
        return gzip.decompress(data), None
    except (EOFError, OSError, zlib.error) as exc:
        return None, f"undecodable gzip: {exc}"


def text_problem(data: bytes, read_mode: str) -> tuple[str | None, bool]:
    """(file error, whether the bytes are valid UTF-8).

    NUL bytes never occur in UTF-8 JSON text: they mark a binary file, as does invalid
    UTF-8 whose first 8 KB is over 10% replacement or control characters (text in a
    legacy encoding has far fewer). Other invalid UTF-8 is a file error under ``strict``;
    under ``rescue`` only the lines holding it are quarantined.
    """
    if b"\x00" in data:
        return "binary content (NUL bytes), not NDJSON text", False
    try:
        data.decode("utf-8")
        return None, True
    except UnicodeDecodeError:
        pass
    sample = data[:8192].decode("utf-8", "replace")
    odd = sum(1 for c in sample if c == "\ufffd" or ("\x01" <= c <= "\x1f" and c not in "\t\n\r"))
    if odd * 10 > len(sample):
        return "binary content (mostly undecodable bytes), not NDJSON text", False
    return ("invalid UTF-8" if read_mode == ReadMode.STRICT else None), False


def convert_file(uri: str, data: bytes, rules: LineRules) -> FileRows:
    """Turn one file's bytes (already gunzipped) into rows, quarantined lines and counts."""
    result = FileRows(uri)
    file_error, utf8_valid = text_problem(data, rules.read_mode)
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        # A leading byte-order mark is not part of the first record.
        lines[0] = lines[0][3:]
    if file_error is not None:
        result.file_error = file_error
        if file_error.startswith("binary"):
            return result
        result.rows_in = sum(1 for line in lines if line.strip(_BLANK_BYTES))
        return result

    candidates: list[bytes] = []  # stripped lines that look like one JSON object
    candidate_numbers: list[int] = []
    others: list[int] = []  # lines Arrow's reader must not see: not an object, or invalid UTF-8
    for number, line in enumerate(lines, start=1):
        stripped = line.strip(_BLANK_BYTES)
        if not stripped:
            continue
        result.rows_in += 1
        # Arrow's reader takes NaN, Inf and Infinity as numbers; JSON has no such values, so classify_line decides.
        looks_like_object = stripped[:1] == b"{" and stripped[-1:] == b"}" and b"NaN" not in stripped
        if looks_like_object and b"Inf" not in stripped and (utf8_valid or _is_utf8(stripped)):
            candidates.append(stripped)
            candidate_numbers.append(number)
        else:
            others.append(number)

    tables, accepted, refused = bulk_parse(candidates, rules.schema)
    if rules.read_mode == ReadMode.RESCUE:
        tables = [t.append_column(RESCUED_COLUMN, pa.nulls(t.num_rows, pa.string())) for t in tables]
    row_numbers = [candidate_numbers[i] for i in accepted]

    slow_rows: list[dict] = []
    for number in sorted([*others, *(candidate_numbers[i] for i in refused)]):
        line = lines[number - 1]
        if not (utf8_valid or _is_utf8(line)):
            result.bad_lines.append(_bad_line(uri, number, line, "invalid UTF-8", rules))
            continue
        # The same stripped text the bulk reader saw: the outcome must not depend on the path.
        row, rescued, reason = classify_line(line.strip(_BLANK_BYTES).decode("utf-8"), rules)
        if reason is not None:
            result.bad_lines.append(_bad_line(uri, number, line, reason, rules))
            continue
        if rules.read_mode == ReadMode.RESCUE:
            row[RESCUED_COLUMN] = rescued
            result.rows_rescued += rescued is not None
        slow_rows.append(row)
        row_numbers.append(number)
    if slow_rows:
        tables.append(pa.Table.from_pylist(slow_rows, schema=rules.row_schema))
    rows = pa.concat_tables(tables) if tables else rules.row_schema.empty_table()
    result.rows = _with_dt(rows, row_numbers, lines, result, rules)
    result.bad_lines.sort(key=lambda b: b["line_number"])
    return result


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _bad_line(uri: str, number: int, line: bytes, reason: str, rules: LineRules) -> dict:
    raw = line.decode("utf-8", "replace").removesuffix("\r")[: rules.options.max_raw_chars]
    return {"uri": uri, "line_number": number, "raw": raw, "reason": reason}


def bulk_parse(lines: list[bytes], schema: pa.Schema) -> tuple[list[pa.Table], list[int], list[int]]:
    """Parse lines with Arrow's JSON reader: (tables, indices of their rows in order, indices it refused).

    The reader refuses a whole block at its first bad line and usually names that
    line's row: the rows before it are read again as one block and reading goes on
    after it, so a few bad lines cost about one more pass. Without a row number
    the block is halved until the bad lines are alone. Refused lines are not
    necessarily bad (``classify_line`` decides): the reader is stricter than the rules.
    """
    tables, accepted, refused = [], [], []
    pending = _blocks(lines)
    while pending:
        lo, hi = pending.pop()
        if lo == hi:
            continue
        try:
            table = _read_json(lines[lo:hi], schema)
            if table.num_rows == hi - lo:
                tables.append(table)
                accepted.extend(range(lo, hi))
                continue
            bad_row = None  # a line held more than one JSON document
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            match = re.search(r"\bin row (\d+)\b", str(exc))
            bad_row = int(match.group(1)) if match else None
        if hi - lo <= 8:
            refused.extend(range(lo, hi))
        elif bad_row is not None and bad_row < hi - lo:
            # The rows before it read cleanly; the rest is halved, so a run of bad lines costs n log n, not n^2.
            refused.append(lo + bad_row)
            rest = lo + bad_row + 1
            middle = (rest + hi) // 2
            pending += [(middle, hi), (rest, middle), (lo, lo + bad_row)]
        else:
            middle = (lo + hi) // 2
            pending += [(middle, hi), (lo, middle)]
    return tables, accepted, refused


def _blocks(lines: list[bytes], block_bytes: int = 64 * MiB) -> list[tuple[int, int]]:
    """(start, end) blocks of lines of about ``block_bytes``, last block first (``bulk_parse`` pops from the end)."""
    if sum(map(len, lines)) + len(lines) <= block_bytes:
        return [(0, len(lines))]
    blocks, start, size = [], 0, 0
    for index, line in enumerate(lines):
        if size and size + len(line) > block_bytes:
            blocks.append((start, index))
            start, size = index, 0
        size += len(line) + 1
    blocks.append((start, len(lines)))
    return blocks[::-1]


def _read_json(lines: list[bytes], schema: pa.Schema) -> pa.Table:
    data = b"\n".join(lines)
    table = pa_json.read_json(
        io.BytesIO(data),
        # One block for the whole input, and no threads of its own: Spark runs one task per core.
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    return table.select(schema.names)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _object_without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # Arrow's reader refuses a key given twice; silently keeping the last value would hide that.
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def classify_line(text: str, rules: LineRules) -> tuple[dict | None, str | None, str | None]:
    """(row, rescued JSON, quarantine reason) of a line the bulk reader refused.

    A field keeps its value when the value fits the declared type; otherwise the
    value is nulled where it does not fit and the field's whole JSON value goes to
    ``_rescued_data`` (rescue) or the line is quarantined (strict). Unknown fields,
    at any depth, are treated the same way.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicate_keys)
    except (ValueError, RecursionError):
        return None, None, "malformed JSON"
    if isinstance(value, list):
        return None, None, "not a JSON object: array"
    if not isinstance(value, dict):
        return None, None, "not a JSON object: scalar or null"
    row, mismatched = {}, []
    for f in rules.schema:
        row[f.name], fits = conform(value.get(f.name), f.type)
        if not fits:
            mismatched.append(f.name)
    unknown = [k for k in value if k not in row]
    if rules.read_mode == ReadMode.STRICT:
        if unknown:
            return None, None, "unknown fields: " + ", ".join(sorted(unknown))
        if mismatched:
            return None, None, "type mismatch: " + ", ".join(mismatched)
        return row, None, None
    rescued = {k: _raw_json(value[k]) for k in [*mismatched, *unknown]}
    return row, (json.dumps(rescued) if rescued else None), None


def _raw_json(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def conform(value: object, arrow: pa.DataType) -> tuple[object, bool]:
    """``value`` as the declared type (parts that do not fit nulled, unknown keys dropped), and whether all fit."""
    if value is None:
        return None, True
    if pa.types.is_struct(arrow):
        if not isinstance(value, dict):
            return None, False
        out, fits = {}, set(value) <= {f.name for f in arrow}
        for f in arrow:
            out[f.name], ok = conform(value.get(f.name), f.type)
            fits &= ok
        return out, fits
    if pa.types.is_list(arrow):
        if not isinstance(value, list):
            return None, False
        items = [conform(item, arrow.value_type) for item in value]
        return [item for item, _ in items], all(ok for _, ok in items)
    if pa.types.is_string(arrow):
        fits = isinstance(value, str) and _is_utf8_str(value)
    elif pa.types.is_boolean(arrow):
        fits = isinstance(value, bool)
    elif pa.types.is_integer(arrow):
        limit = 2 ** (arrow.bit_width - 1)
        fits = isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit
    else:  # floating point
        fits = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if fits else value
    return (value if fits else None), fits


def _is_utf8_str(value: str) -> bool:
    # json.loads accepts lone surrogate escapes ("\ud800"), which no UTF-8 text can hold.
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _with_dt(rows: pa.Table, row_numbers: list[int], lines: list[bytes], result: FileRows, rules: LineRules):
    """``rows`` with their dt; under event-time partitioning, rows without a usable time are quarantined."""
    if rules.options.partitioning == Partitioning.ARRIVAL:
        return rows.append_column(PARTITION_COLUMN, pc.fill_null(pa.nulls(rows.num_rows, pa.string()), rules.day))
    values = rows.column(rules.options.event_time_field.split(".")[0]).combine_chunks()
    for name in rules.options.event_time_field.split(".")[1:]:
        values = pc.struct_field(values, name)
    days = event_days(values, rules.options.event_time_format)
    keep = pc.is_valid(days)
    rescued = rows.column(RESCUED_COLUMN) if RESCUED_COLUMN in rows.column_names else None
    for index in pc.indices_nonzero(pc.invert(keep)).to_pylist():
        value = values[index].as_py()
        what = "missing" if value is None else "unparsable"
        reason = f"{what} event time {rules.options.event_time_field}" + ("" if value is None else f": {value}")
        number = row_numbers[index]
        result.bad_lines.append(_bad_line(result.uri, number, lines[number - 1], reason, rules))
        result.rows_rescued -= rescued is not None and rescued[index].is_valid
    return rows.append_column(PARTITION_COLUMN, days).filter(keep)


def event_days(values: pa.Array, time_format: str) -> pa.Array:
    """The UTC day (YYYY-MM-DD) of each event time string; null where missing or unparsable.

    ``iso8601`` accepts what ``datetime.fromisoformat`` does (a time without an offset is UTC);
    any other format is a strptime format such as ``%d/%m/%Y %H:%M``.
    """
    if time_format.lower() != "iso8601":
        parsed = pc.strptime(values, format=time_format, unit="us", error_is_null=True)
        return pc.strftime(parsed, format="%Y-%m-%d")
    days = []
    for value in values.to_pylist():
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            days.append(None)
            continue
        days.append((moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat())
    return pa.array(days, pa.string())


# --------------------------------------------------------------------------- output groups (one Spark task each)


@dataclass(frozen=True)
class SourceFile:
    """A manifest file as a task sees it (the manifest classes stay on the driver)."""

    identity: str
    uri: str
    etag: str
    size: int


@dataclass(frozen=True)
class GroupWork:
    """Everything one task needs: its files and where its output goes."""

    index: int
    files: tuple[SourceFile, ...]
    rules: LineRules
    storage: Storage
    staging: str
    compression: str
    lineage: bool
    manifest_id: str


def files_for_size(total_bytes: int, target_file_mb: float) -> int:
    """How many output files ``total_bytes`` of input gets; input bytes over-estimate Parquet size."""
    return max(1, math.ceil(total_bytes / (target_file_mb * MiB)))


def plan_groups(files: Iterable[FileVersion], target_file_mb: float) -> list[tuple[SourceFile, ...]]:
    """Split files into output groups of about ``target_file_mb`` of input each, the same way every time.

    Biggest files first, each to the lightest group: groups end up near equal, which
    keeps the tasks (one per group) near equal too.
    """
    files = sorted(files, key=lambda f: (-f.size, f.uri))
    if not files:
        return []
    count = min(len(files), files_for_size(sum(f.size for f in files), target_file_mb))
    groups: list[list[SourceFile]] = [[] for _ in range(count)]
    loads = [0] * count
    for f in files:
        lightest = min(range(count), key=lambda g: (loads[g], g))
        groups[lightest].append(SourceFile(identity=f.identity, uri=f.uri, etag=f.etag, size=f.size))
        loads[lightest] += f.size
    return [tuple(sorted(group, key=lambda f: f.uri)) for group in groups]


def convert_group(work: GroupWork) -> dict:
    """Convert one group's files and stage its output; runs in a Spark task.

    Returns each file's outcome by identity, and the staged Parquet files (dt -> uri, rows,
    bytes) and quarantined lines (uri, count).
    """
    outcomes, tables, bad_lines = {}, [], []
    for file in work.files:
        data = work.storage.read_version(file.uri, file.etag)
        if data is None:
            reason = f"superseded: {file.uri} no longer has eTag {file.etag} (changed or deleted)"
            outcomes[file.identity] = {"outcome": FileState.QUARANTINED, "reason": reason}
            continue
        error = None
        if file.uri.lower().endswith(".gz"):
            data, error = gunzip(data)
        rows = FileRows(file.uri, file_error=error) if error else convert_file(file.uri, data, work.rules)
        outcomes[file.identity] = rows.outcome()
        bad_lines += [{**line, "manifest_id": work.manifest_id} for line in rows.bad_lines]
        if rows.rows_out:
            tables.append(_with_lineage(rows.rows, file.uri, work))
    staged = {}
    if tables:
        table = pa.concat_tables(tables)
        for dt in sorted(set(table.column(PARTITION_COLUMN).to_pylist())):
            part = table.filter(pc.equal(table.column(PARTITION_COLUMN), dt)).drop_columns([PARTITION_COLUMN])
            buffer = io.BytesIO()
            pq.write_table(part, buffer, compression=work.compression)
            uri = f"{work.staging}/data/{PARTITION_COLUMN}={dt}/part-{work.index:05d}.parquet"
            work.storage.write_bytes(uri, buffer.getvalue())
            staged[dt] = {"uri": uri, "rows": part.num_rows, "bytes": buffer.tell()}
    quarantine = None
    if bad_lines:
        quarantine = {"uri": f"{work.staging}/quarantine/lines-{work.index:05d}.json", "lines": len(bad_lines)}
        text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in bad_lines)
        work.storage.write_bytes(quarantine["uri"], text.encode())
    return {
        "index": work.index,
        "outcomes": outcomes,
        "staged": staged,
        "quarantine": quarantine,
        "usage": None if work.storage.recorder is None else work.storage.recorder.take().as_dict(),
    }


def _with_lineage(rows: pa.Table, uri: str, work: GroupWork) -> pa.Table:
    if not work.lineage:
        return rows
    constant = functools.partial(pc.fill_null, pa.nulls(rows.num_rows, pa.string()))
    rows = rows.append_column(pa.field(LINEAGE_COLUMNS[0], pa.string(), nullable=False), constant(uri))
    return rows.append_column(LINEAGE_COLUMNS[1], constant(work.manifest_id))


def run_groups(spark: SparkSession, works: list[GroupWork]) -> list[dict]:
    """Run ``convert_group`` for each group, one Spark task per group."""
    if not works:
        return []
    if __name__ != "__main__":
        # Imported as a module (tests, benchmark): ship its code by value, as Spark does for a Glue script.
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return spark.sparkContext.parallelize(works, len(works)).map(convert_group).collect()


# --------------------------------------------------------------------------- storage


# --------------------------------------------------------------------------- load / publish


def load_manifest(storage: Storage, args: JobArguments) -> Manifest:
    return Manifest.from_json(storage.read_bytes(args.manifest_uri))


def load_schema(storage: Storage, args: JobArguments) -> T.StructType:
    return parse_schema(storage.read_bytes(args.schema_uri).decode("utf-8"), args)


@dataclass(frozen=True)
class Publication:
    """What one attempt publishes: final URI -> staged URI, rows and bytes of the Parquet files, the files record."""

    copies: dict[str, str]
    rows: dict[str, int]
    sizes: dict[str, int]
    files_record: bytes | None


def plan_publication(
    group_outputs: list[dict], args: JobArguments, manifest: Manifest, quarantined_files: list[dict]
) -> Publication:
    copies, rows, sizes = {}, {}, {}
    layout, staged_lines = args.layout, []
    for output in sorted(group_outputs, key=lambda o: o["index"]):
        for dt, staged in output["staged"].items():
            final = layout.part_uri(dt, manifest.manifest_id, output["index"], args.options.compression)
            copies[final], rows[final], sizes[final] = staged["uri"], staged["rows"], staged["bytes"]
        if output["quarantine"]:
            staged_lines.append(output["quarantine"]["uri"])
    for n, uri in enumerate(staged_lines):
        copies[layout.quarantined_lines_uri(manifest.day, manifest.manifest_id, n)] = uri
    record = (
        "".join(json.dumps(f, sort_keys=True) + "\n" for f in quarantined_files).encode() if quarantined_files else None
    )
    return Publication(copies=copies, rows=rows, sizes=sizes, files_record=record)


def publish(
    storage: Storage, publication: Publication, layout: LakeLayout, manifest: Manifest, stale_dts: set[str]
) -> None:
    """Copy staged files to their final names, then delete this manifest's files that are not in the new set.

    Only names carrying this manifest's id are ever deleted, so other manifests' files are never touched.
    Before the first copy, the publish log lists every object this and earlier attempts published, so a
    compensation that gives up on the manifest can remove partial output wherever it landed.
    """
    day, manifest_id = manifest.day, manifest.manifest_id
    files_uri = layout.quarantined_files_uri(day, manifest_id)
    keep = set(publication.copies)
    if publication.files_record is not None:
        keep.add(files_uri)
    log_uri = layout.publish_log_uri(day, manifest_id)
    earlier = PublishLog.read(storage, log_uri)
    logged = set(earlier.uris) if earlier else set()
    PublishLog(frozenset(logged | keep)).write(storage, log_uri)
    for final, staged in sorted(publication.copies.items()):
        storage.copy(staged, final)
    if publication.files_record is not None:
        storage.write_bytes(files_uri, publication.files_record)
    existing: dict[str, int] = {uri: 0 for uri in logged}
    for dt in sorted(stale_dts):
        existing |= storage.list(layout.part_prefix(dt, manifest_id))
    existing |= storage.list(layout.quarantine_uri(day, manifest_id) + "/")
    stale = sorted(set(existing) - keep)
    if stale:
        log.info("deleting %s stale file(s) of manifest %s", len(stale), manifest_id)
        storage.delete(stale)
    PublishLog(frozenset(keep)).write(storage, log_uri)


# --------------------------------------------------------------------------- the job


def convert_manifest(
    spark: SparkSession, args: JobArguments, storage: Storage, *, attempt: str | None = None
) -> JobResult:
    """Convert one manifest end to end and write its result; return the result."""
    started = time.monotonic()
    manifest = load_manifest(storage, args)
    if args.manifest_id != manifest.manifest_id or args.day != manifest.day:
        raise JobArgumentError(
            f"--manifest_id {args.manifest_id} --day {args.day} do not match {args.manifest_uri} "
            f"({manifest.manifest_id} of {manifest.day})"
        )
    schema = load_schema(storage, args)
    options, layout = args.options, args.layout
    rules = LineRules(schema=pa.schema(list(arrow_type(schema))), day=manifest.day, options=options)
    attempt = attempt or uuid.uuid4().hex
    staging = f"{layout.staging_uri(manifest.manifest_id)}/{attempt}"
    works = [
        GroupWork(
            index=index,
            files=files,
            rules=rules,
            storage=storage.for_tasks(),
            staging=staging,
            compression=options.compression,
            lineage=options.lineage,
            manifest_id=manifest.manifest_id,
        )
        for index, files in enumerate(plan_groups(manifest.files, options.target_file_mb))
    ]
    group_outputs = run_groups(spark, works)
    timings = {"convert_s": time.monotonic() - started}

    step = time.monotonic()
    outcomes = {identity: o for output in group_outputs for identity, o in output["outcomes"].items()}
    results, quarantined_files = _file_results(manifest, outcomes)
    publication = plan_publication(group_outputs, args, manifest, quarantined_files)
    output_files = tuple(
        OutputFile(path=path, bytes=publication.sizes[path], rows=publication.rows[path])
        for path in sorted(publication.rows)
    )
    result = JobResult(
        manifest_id=manifest.manifest_id,
        day=manifest.day,
        files=results,
        output_files=output_files,
        schema=_output_schema(schema, options).jsonValue(),
        timings=timings,
    )
    result.check_reconciled(manifest)

    previous = storage.read_bytes_if_exists(args.result_uri)
    stale_dts = {manifest.day} | {layout.dt_of(path) for path in publication.rows}
    if previous is not None:
        stale_dts |= _previous_dts(previous)
        # The completion marker goes first, so nobody trusts the old result while files are replaced.
        storage.delete([args.result_uri])
    publish(storage, publication, layout, manifest, {dt for dt in stale_dts if dt})
    storage.delete_prefix(layout.staging_uri(manifest.manifest_id))
    timings["publish_s"] = time.monotonic() - step
    timings["total_s"] = time.monotonic() - started
    result = replace(result, timings={k: round(v, 3) for k, v in timings.items()})
    if storage.recorder is not None:
        record_usage(storage, layout, manifest, attempt, group_outputs)
    storage.write_bytes(args.result_uri, result.to_json().encode())
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


def record_usage(storage: Storage, layout: LakeLayout, manifest: Manifest, attempt: str, outputs: list[dict]) -> None:
    """The run's S3 requests, the driver's and every task's, under the manifest's day (one record per attempt)."""
    usage = storage.recorder.take()
    for output in outputs:
        usage.add(Usage.from_dict(output.get("usage")))
    usage.requests["s3.PutObject"] += 1  # the result, written after this record
    write_usage(storage, layout, manifest.day, f"job-{manifest.manifest_id}-{attempt}", usage)


def _output_schema(schema: T.StructType, options: ConversionOptions) -> T.StructType:
    fields = [T.StructField(f.name, f.dataType, True) for f in schema.fields]
    if options.read_mode == ReadMode.RESCUE:
        fields.append(T.StructField(RESCUED_COLUMN, T.StringType()))
    if options.lineage:
        fields += [T.StructField(name, T.StringType(), name != "_source_uri") for name in LINEAGE_COLUMNS]
    return T.StructType(fields)


def _previous_dts(previous: bytes) -> set[str]:
    try:
        paths = [f["path"] for f in json.loads(previous).get("output_files", [])]
    except (ValueError, AttributeError, TypeError):
        return set()
    return {dt for dt in map(LakeLayout.dt_of, paths) if dt}


def _file_results(manifest: Manifest, outcomes: dict[str, dict]) -> tuple[tuple[FileResult, ...], list[dict]]:
    """Each manifest file's result, and the record of the files quarantined whole."""
    results, quarantined = [], []
    for file in manifest.files:
        if file.identity not in outcomes:
            raise RuntimeError(f"manifest {manifest.manifest_id}: no task reported {file.identity}")
        result = FileResult(file.identity, file.uri, **outcomes[file.identity])
        if result.outcome == FileState.QUARANTINED:
            record = {"uri": file.uri, "identity": file.identity, "reason": result.reason}
            quarantined.append({**record, "manifest_id": manifest.manifest_id})
        results.append(result)
    return tuple(results), quarantined


# --------------------------------------------------------------------------- entry point


def main(argv: list[str]) -> JobResult:
    """Run the job: on Glue through its GlueContext's session, elsewhere with a plain SparkSession."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = job_arguments(argv)
    try:
        from awsglue.context import GlueContext
    except ImportError:
        spark = SparkSession.builder.appName("ndjson_to_parquet").getOrCreate()
    else:
        from pyspark.context import SparkContext

        spark = GlueContext(SparkContext.getOrCreate()).spark_session
    return convert_manifest(spark, args, Storage(recorder=RequestRecorder()))


if __name__ == "__main__":
    main(sys.argv)

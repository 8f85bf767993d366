"""One file's bytes -> its rows, its quarantined lines and its counts.

A file that cannot be decoded as a whole (truncated gzip, binary content, or
invalid UTF-8 under ``strict``) is quarantined as a file; otherwise each line is
decided on its own (``ndjson_job.lines``) and rows get their dt.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from ndjson_job.lines import LineRules, bulk_parse, classify_line
from ndjson_job.schema import RESCUED_COLUMN
from ndjson_pipeline.conversion import Partitioning, ReadMode
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.layout import PARTITION_COLUMN
from ndjson_pipeline.manifest import FileResult

# JSON whitespace plus form feed and vertical tab: a line of only these is blank, not data.
_BLANK_BYTES = b" \t\r\n\f\x0b"


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

    def result(self, file: FileVersion) -> FileResult:
        return FileResult(
            identity=file.identity,
            uri=file.uri,
            outcome=FileState.DONE if self.file_error is None else FileState.QUARANTINED,
            reason=self.file_error,
            rows_in=self.rows_in,
            rows_out=self.rows_out,
            rows_rescued=self.rows_rescued,
            rows_quarantined=self.rows_in - self.rows_out,
        )


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

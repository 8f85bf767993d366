"""One file's blocks of lines -> rows with their dt, quarantined lines, and the file's counts.

Every line is decided on its own (``ndjson_job.lines``): a bad line, a stray
control byte in one included, is quarantined with its line number and reason
while the file's other lines load. A file is quarantined whole only when it is
not NDJSON text at all (``Unconvertible``): none of its first ``PROBE_LINES``
non-blank lines is a JSON object (binary data, CSV, logs...), or, under
``strict``, it holds invalid UTF-8.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ndjson_job.bulk import BlockLines, ranges_between, read_block
from ndjson_job.lines import NOT_AN_OBJECT, LineRules, classify_line
from ndjson_job.reading import MAX_LINE_BYTES, MiB, TextBlock, Unconvertible
from ndjson_pipeline.conversion import Partitioning, ReadMode
from ndjson_pipeline.dataset_schema import RESCUED_COLUMN
from ndjson_pipeline.files import FileState, FileVersion
from ndjson_pipeline.layout import PARTITION_COLUMN
from ndjson_pipeline.manifest import FileResult

# JSON whitespace plus form feed and vertical tab: a line of only these is blank, not data.
_BLANK_BYTES = b" \t\r\n\f\x0b"
_BOM = b"\xef\xbb\xbf"
# Non-blank lines looked at before a file without a single JSON object is called not NDJSON.
PROBE_LINES = 100
_NOT_AN_OBJECT = (*NOT_AN_OBJECT, "invalid UTF-8")


@dataclass(frozen=True)
class BlockRows:
    """What one block gave: its rows (``row_schema`` plus dt; None when none) and its quarantined lines."""

    rows: pa.Table | None
    bad_lines: list[dict[str, Any]]


class FileConverter:
    """Converts one file block by block (``convert``), keeping its counts; ``finish`` gives its FileResult."""

    def __init__(self, file: FileVersion, rules: LineRules) -> None:
        self.file = file
        self.rules = rules
        self.rows_in = self.rows_out = self.rows_rescued = 0
        self.error: str | None = None  # set when the file is quarantined whole but still counted
        self._probed = self._objects = 0

    def convert(self, block: TextBlock) -> BlockRows:
        if block.cut:
            self.rows_in += 1
            reason = f"line too long: over {MAX_LINE_BYTES // MiB} MiB"
            return BlockRows(None, [self._bad_line(block.first_line, block.data, reason)])
        data = block.data[len(_BOM) :] if block.first_line == 1 and block.data.startswith(_BOM) else block.data
        if self.error is not None:
            self.rows_in += sum(1 for line in data.split(b"\n") if line.strip(_BLANK_BYTES))
            return BlockRows(None, [])
        utf8_valid = _is_utf8(data)
        converted = self._convert_lines(BlockLines(data), block.first_line, utf8_valid)
        if not utf8_valid and self.rules.read_mode == ReadMode.STRICT:
            self.error = "invalid UTF-8"  # after the lines, so that binary content is still called so
            return BlockRows(None, [])
        return converted

    def finish(self) -> FileResult:
        """The file's result once every block is converted; Unconvertible when it proved not to be NDJSON."""
        self._check_probe(final=True)
        return FileResult(
            identity=self.file.identity,
            uri=self.file.uri,
            outcome=FileState.DONE if self.error is None else FileState.QUARANTINED,
            reason=self.error,
            rows_in=self.rows_in,
            rows_out=0 if self.error else self.rows_out,
            rows_rescued=0 if self.error else self.rows_rescued,
            rows_quarantined=self.rows_in if self.error else self.rows_in - self.rows_out,
        )

    def _convert_lines(self, block: BlockLines, first_line: int, utf8_valid: bool) -> BlockRows:
        """The block's rows: Arrow reads the lines in bulk (``bulk``); ``classify_line`` decides the rest."""
        rules = self.rules
        odd = block.odd_lines()
        if not utf8_valid:  # rare: invalid bytes somewhere in the block, found line by line
            odd = sorted({*odd, *(i for i in range(block.count) if not _is_utf8(block.line(i)))})
        read = read_block(block, ranges_between(odd, block.count), rules.schema, rules.threads)
        # Odd lines: blank ones are skipped; objects with blank characters around them are read in bulk too.
        blank: set[int] = set()
        padded: list[tuple[int, bytes]] = []
        careful = dict(zip(read.left, (block.line(i).strip(_BLANK_BYTES) for i in read.left), strict=True))
        for index in odd:
            stripped = block.line(index).strip(_BLANK_BYTES)
            if not stripped:
                blank.add(index)
            elif stripped[:1] == b"{" and stripped[-1:] == b"}" and b"\x00" not in stripped and _is_utf8(stripped):
                padded.append((index, stripped))
            else:
                careful[index] = stripped
        tables = [] if read.table is None else [read.table]
        row_lines = read.lines
        if padded:
            again = BlockLines(b"\n".join(stripped for _, stripped in padded))
            second = read_block(again, [(0, again.count)], rules.schema, rules.threads)
            if second.table is not None:
                tables.append(second.table)
                row_lines = [*row_lines, *(padded[i][0] for i in second.lines)]
            careful.update((padded[i][0], padded[i][1]) for i in second.left)
        self.rows_in += block.count - len(blank)

        if rules.read_mode == ReadMode.RESCUE:
            tables = [t.append_column(RESCUED_COLUMN, pa.nulls(t.num_rows, pa.string())) for t in tables]
        slow_rows: list[dict[str, Any]] = []
        bad_lines: list[dict[str, Any]] = []
        not_objects: set[int] = set()
        for index in sorted(careful):
            stripped = careful[index]
            reason: str | None
            if not _is_utf8(stripped):
                reason = "invalid UTF-8"
            else:
                row, rescued, reason = classify_line(stripped.decode("utf-8"), rules)
            if reason is not None:
                bad_lines.append(self._bad_line(first_line + index, block.line(index), reason))
                if reason.startswith(_NOT_AN_OBJECT):
                    not_objects.add(index)
                continue
            assert row is not None  # classify_line gives a row whenever it gives no reason
            if rules.read_mode == ReadMode.RESCUE:
                row[RESCUED_COLUMN] = rescued
                self.rows_rescued += rescued is not None
            slow_rows.append(row)
            row_lines.append(index)
        self._probe(block.count, blank, not_objects)
        if slow_rows:
            tables.append(pa.Table.from_pylist(slow_rows, schema=rules.row_schema))
        if not tables:
            return BlockRows(None, sorted(bad_lines, key=lambda b: b["line_number"]))
        rows = pa.concat_tables(tables)
        if padded:  # the padded lines' rows were read apart: back into line order (slow rows stay last)
            bulk = len(row_lines) - len(slow_rows)
            order = sorted(range(bulk), key=row_lines.__getitem__) + list(range(bulk, len(row_lines)))
            rows, row_lines = rows.take(pa.array(order, pa.int64())), [row_lines[i] for i in order]
        rows = self._with_dt(rows, row_lines, block, first_line, bad_lines)
        self.rows_out += rows.num_rows
        return BlockRows(rows, sorted(bad_lines, key=lambda b: b["line_number"]))

    def _probe(self, count: int, blank: set[int], not_objects: set[int]) -> None:
        """Look at the file's first ``PROBE_LINES`` non-blank lines: a file without one JSON object is not NDJSON."""
        if self._probed >= PROBE_LINES:
            return
        wanted = PROBE_LINES - self._probed
        probe = list(itertools.islice((i for i in range(count) if i not in blank), wanted))
        self._probed += len(probe)
        self._objects += sum(1 for index in probe if index not in not_objects)
        self._check_probe(final=False)

    def _check_probe(self, final: bool) -> None:
        if self._objects == 0 and self._probed and (final or self._probed >= PROBE_LINES):
            raise Unconvertible(f"not NDJSON text: none of its first {self._probed} non-blank line(s) is a JSON object")

    def _bad_line(self, number: int, line: bytes, reason: str) -> dict[str, Any]:
        raw = line.decode("utf-8", "replace").removesuffix("\r")[: self.rules.options.max_raw_chars]
        return {"uri": self.file.uri, "line_number": number, "raw": raw, "reason": reason}

    def _with_dt(
        self, rows: pa.Table, row_lines: list[int], block: BlockLines, first_line: int, bad_lines: list[dict[str, Any]]
    ) -> pa.Table:
        """``rows`` with their dt; under event-time partitioning, rows without a usable time are quarantined."""
        options = self.rules.options
        if options.partitioning == Partitioning.ARRIVAL:
            days = pc.fill_null(pa.nulls(rows.num_rows, pa.string()), self.rules.day)
            return rows.append_column(PARTITION_COLUMN, days)
        values = rows.column(options.event_time_field.split(".")[0]).combine_chunks()
        for name in options.event_time_field.split(".")[1:]:
            values = pc.struct_field(values, name)
        days = event_days(values, options.event_time_format)
        keep = pc.is_valid(days)
        rescued = rows.column(RESCUED_COLUMN) if RESCUED_COLUMN in rows.column_names else None
        top = options.event_time_field.split(".")[0]
        for index in pc.indices_nonzero(pc.invert(keep)).to_pylist():
            value = values[index].as_py()
            if value is None and rescued is not None and rescued[index].is_valid:
                # A typed event time that did not parse was nulled and rescued: say so, with what the line held.
                value = json.loads(rescued[index].as_py()).get(top)
            what = "missing" if value is None else "unparsable"
            reason = f"{what} event time {options.event_time_field}" + ("" if value is None else f": {value}")
            line_index = row_lines[index]
            bad_lines.append(self._bad_line(first_line + line_index, block.line(line_index), reason))
            self.rows_rescued -= rescued is not None and rescued[index].is_valid
        return rows.append_column(PARTITION_COLUMN, days).filter(keep)


def event_days(values: pa.Array, time_format: str) -> pa.Array:
    """The UTC day (YYYY-MM-DD) of each event time; null where missing or unparsable.

    A typed timestamp is already in UTC. For a string, ``iso8601`` accepts what
    ``datetime.fromisoformat`` does (a time without an offset is UTC); any other
    format is a strptime format such as ``%d/%m/%Y %H:%M``.
    """
    if pa.types.is_timestamp(values.type):
        return pc.strftime(values, format="%Y-%m-%d")
    if time_format.lower() != "iso8601":
        parsed = pc.strptime(values, format=time_format, unit="us", error_is_null=True)
        return pc.strftime(parsed, format="%Y-%m-%d")
    days: list[str | None] = []
    for value in values.to_pylist():
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            days.append(None)
            continue
        days.append((moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat())
    return pa.array(days, pa.string())


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False

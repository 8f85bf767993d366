"""A block of whole lines -> the rows Arrow reads in bulk, and the lines it leaves to the line-by-line rules.

On the happy path no Python touches a line: the block's bytes go to Arrow's JSON
reader in chunks of whole lines, split at line breaks found with C-level byte
searches and Arrow's vectorised kernels. Python only looks at the lines those searches single out (a line that
does not start with ``{`` or end with ``}``, a NUL byte, invalid UTF-8: blank
lines, arrays, scalars, a bare ``null`` that crashes pyarrow 25's reader,
truncated lines) and at the lines Arrow refuses. A refusal costs the re-parse of
the chunk around the refused line, so chunks stay small (``CHUNK_BYTES``): a few
bad lines in a block cost a few small re-parses, not a second pass over the
block. Chunks are read on ``threads`` threads (Arrow releases the GIL), and the
block's rows come back as one table, checked once for values JSON cannot hold.

Arrow is only a faster way to reach the decision ``lines.classify_line`` would
take: whatever it reads is what ``classify_line`` would load, and everything
else is decided by ``classify_line`` (tests/glue/test_lines.py holds them to it).

Types Arrow's JSON reader does not read as the rules do are read as something
it does, then converted in vectorised kernels (``to_declared``): ISO-8601
timestamps and dates as text checked against the rules' own patterns, epoch
timestamps as exact decimals. A row whose value does not convert is left to the
rules. Arrow's reader has no maps, and reading a JSON object as an inferred
struct cannot tell a null value from a missing key: lines of a schema with a map
are all decided by the rules.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ndjson_job.lines import MAX_MICROS, MIN_MICROS, time_format_of
from ndjson_pipeline.dataset_schema import EPOCH_UNITS, ISO_DATE, ISO_TIMESTAMP

MiB = 1024 * 1024
# Bytes of whole lines Arrow reads at a time: a refused line costs at most the re-parse of this much.
CHUNK_BYTES = 256 * 1024
# Refused chunks of at most this many lines are handed over line by line instead of being split further.
_SMALLEST_SPLIT = 8
_LINE_BREAK, _CARRIAGE_RETURN, _OPEN, _CLOSE = 0x0A, 0x0D, ord("{"), ord("}")


@dataclass
class BulkRead:
    """What Arrow read of a block: ``table``'s rows are the lines ``lines`` (0-based, in order); ``left``: the
    lines left to the rules (sorted)."""

    table: pa.Table | None = None
    lines: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Chunk:
    start: int  # byte offset of its first line in the block
    end: int  # byte offset just past its last line (before the line break)
    first_line: int
    lines: int


class BlockLines:
    """Where a block's lines are, found by Arrow's vectorised kernels, not by a Python loop over the lines.

    :param data: the block: whole lines, separated by ``\\n`` (the last one may lack it).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._bytes = pa.Array.from_buffers(pa.uint8(), len(data), [None, pa.py_buffer(data)])
        # Each line's length from one C-level split; its end (the offset of its line break, or the block's end)
        # and its first byte follow by a cumulative sum.
        lines = data.split(b"\n") if data else []
        if data.endswith(b"\n"):
            lines.pop()
        self.count = len(lines)
        lengths = pa.array(map(len, lines), pa.int64(), size=self.count)
        del lines
        self._ends = pc.subtract(pc.cumulative_sum(pc.add(lengths, 1)), 1)
        self._starts = pc.subtract(self._ends, lengths)

    def start(self, line: int) -> int:
        return int(self._starts[line].as_py())

    def end(self, line: int) -> int:
        """The offset of the line's break (or the block's end)."""
        return int(self._ends[line].as_py())

    def line(self, index: int) -> bytes:
        """The bytes of line ``index`` (0-based), without its line break."""
        return self.data[self.start(index) : self.end(index)]

    def odd_lines(self) -> list[int]:
        """Lines that need a look before Arrow may see them, in order: see the module docstring."""
        if not self.count:
            return []
        last_byte = pc.subtract(self._ends, 1)
        ends_with_cr = pc.and_(
            pc.greater(self._ends, self._starts),
            pc.equal(self._bytes.take(pc.max_element_wise(last_byte, 0)), _CARRIAGE_RETURN),
        )
        closing = pc.max_element_wise(pc.subtract(last_byte, ends_with_cr.cast(pa.int64())), 0)
        odd = pc.or_(
            pc.not_equal(self._bytes.take(self._starts), _OPEN),  # also every blank line: it starts with its break
            pc.or_(pc.not_equal(self._bytes.take(closing), _CLOSE), pc.less_equal(closing, self._starts)),
        )
        found = set(pc.indices_nonzero(odd).to_pylist())
        if b"\x00" in self.data:  # a NUL byte may end the text for Arrow's parser
            found |= {self.data.count(b"\n", 0, at) for at in _positions(self.data, b"\x00")}
        return sorted(found)

    def chunks(self, first: int, stop: int) -> Iterator[_Chunk]:
        """Lines ``first`` .. ``stop - 1`` as chunks of whole lines of about ``CHUNK_BYTES``."""
        line, start, end_of_range = first, self.start(first), self.end(stop - 1)
        while line < stop:
            cut = self.data.find(b"\n", min(start + CHUNK_BYTES, end_of_range))
            end = end_of_range if cut < 0 or cut >= end_of_range else cut
            lines = self.data.count(b"\n", start, end) + 1
            yield _Chunk(start, end, line, lines)
            start, line = end + 1, line + lines

    def split(self, chunk: _Chunk, head: int, tail: int) -> list[_Chunk]:
        """The chunk's first ``head`` lines and its lines from ``tail`` on, as chunks (empty ones left out)."""
        parts = []
        if head:
            parts.append(_Chunk(chunk.start, self.end(chunk.first_line + head - 1), chunk.first_line, head))
        if tail < chunk.lines:
            parts.append(
                _Chunk(self.start(chunk.first_line + tail), chunk.end, chunk.first_line + tail, chunk.lines - tail)
            )
        return parts


def read_block(block: BlockLines, good: list[tuple[int, int]], schema: pa.Schema, threads: int = 1) -> BulkRead:
    """Read the line ranges ``good`` ((first, stop) pairs) with Arrow, chunk by chunk: what it read and left.

    A refused chunk is read again without the line Arrow named (the lines before
    it, then the lines after it); without a name it is halved, and a chunk of a
    few lines is left whole to the rules.
    """
    read: list[tuple[_Chunk, pa.Table]] = []
    left: list[int] = []
    declared = schema
    schema = read_schema(declared)
    if any(_contains(f.type, pa.types.is_map) for f in declared):
        return BulkRead(left=sorted(line for first, stop in good for line in range(first, stop)))
    pending = [chunk for first, stop in good for chunk in block.chunks(first, stop)]
    executor = ThreadPoolExecutor(threads) if threads > 1 else None
    mapper = executor.map if executor is not None else map
    try:
        while pending:
            outcomes = list(mapper(lambda chunk: _read_chunk(block.data, chunk, schema), pending))
            retry: list[_Chunk] = []
            for chunk, (table, bad_row) in zip(pending, outcomes, strict=True):
                if table is not None:
                    read.append((chunk, table))
                elif chunk.lines <= _SMALLEST_SPLIT:
                    left.extend(range(chunk.first_line, chunk.first_line + chunk.lines))
                elif bad_row is not None and bad_row < chunk.lines:
                    left.append(chunk.first_line + bad_row)
                    retry += block.split(chunk, bad_row, bad_row + 1)
                else:
                    retry += block.split(chunk, chunk.lines // 2, chunk.lines // 2)
            pending = retry
    finally:
        if executor is not None:
            executor.shutdown()
    if not read:
        return BulkRead(left=sorted(left))
    read.sort(key=lambda pair: pair[0].first_line)
    table = pa.concat_tables(t for _, t in read)
    lines = list(itertools.chain.from_iterable(range(c.first_line, c.first_line + c.lines) for c, _ in read))
    if any(_has_doubles(f.type) for f in schema) and (bad := rows_not_finite(table)):
        # Rows holding a value JSON cannot have are left to the rules.
        left.extend(lines[i] for i in bad)
        keep = sorted(set(range(len(lines))) - set(bad))
        table, lines = table.take(pa.array(keep, pa.int64())), [lines[i] for i in keep]
    if any(_converts(f.type) for f in declared):
        table, bad = to_declared(table, declared)
        if bad:  # values the rules refuse (a pattern, no such day, too many digits): decided by the rules
            left.extend(lines[i] for i in bad)
            keep = sorted(set(range(len(lines))) - set(bad))
            table, lines = table.take(pa.array(keep, pa.int64())), [lines[i] for i in keep]
    return BulkRead(table, lines, sorted(left))


def read_schema(declared: pa.Schema) -> pa.Schema:
    """The schema Arrow's JSON reader reads the declared fields with (``to_declared`` converts it back)."""
    return pa.schema([f.with_type(_read_type(f.type, time_format_of(f))).remove_metadata() for f in declared])


def _read_type(arrow: pa.DataType, time_format: str | None) -> pa.DataType:
    if pa.types.is_struct(arrow):
        return pa.struct([f.with_type(_read_type(f.type, time_format_of(f))).remove_metadata() for f in arrow])
    if pa.types.is_list(arrow):
        return pa.list_(_read_type(arrow.value_type, time_format))
    if pa.types.is_timestamp(arrow):
        # Epoch numbers as exact decimals: Arrow refuses a fraction finer than a microsecond instead of rounding.
        return pa.decimal128(24, EPOCH_UNITS[time_format]) if time_format in EPOCH_UNITS else pa.string()
    if pa.types.is_date(arrow):
        return pa.string()
    return arrow


def to_declared(table: pa.Table, declared: pa.Schema) -> tuple[pa.Table, list[int]]:
    """``table`` (read with ``read_schema``) as the declared types, and its rows holding a value that does not fit.

    The rows listed hold nulls where their values did not convert; they are the rules' to decide.
    """
    columns, bad = [], pa.array([False] * table.num_rows, pa.bool_())
    for f, column in zip(declared, table.columns, strict=True):
        if not _converts(f.type):
            columns.append(column)
            continue
        converted, column_bad = _to_declared(column.combine_chunks(), f.type, time_format_of(f))
        columns.append(converted)
        bad = pc.or_(bad, column_bad)
    return pa.Table.from_arrays(columns, schema=declared), pc.indices_nonzero(bad).to_pylist()


def _converts(arrow: pa.DataType) -> bool:
    """Whether values of the type are read as another type, or need a check Arrow's reader does not make."""
    if pa.types.is_struct(arrow):
        return any(_converts(f.type) for f in arrow)
    if pa.types.is_list(arrow):
        return _converts(arrow.value_type)
    return bool(pa.types.is_timestamp(arrow) or pa.types.is_date(arrow) or pa.types.is_decimal(arrow))


def _to_declared(array: pa.Array, arrow: pa.DataType, time_format: str | None) -> tuple[pa.Array, pa.Array]:
    """The array as ``arrow``, and per item whether its value (at any depth) did not convert."""
    none_bad = pa.array([False] * len(array), pa.bool_())
    if not _converts(arrow):
        return array, none_bad
    if pa.types.is_decimal(arrow):
        # Arrow's reader checks the scale but not the precision: 1e10 reads into decimal(12,2) as 13 digits.
        wide = pa.decimal256(arrow.precision + 1, arrow.scale)
        fits = pc.less(pc.abs(array.cast(wide)), pa.scalar(Decimal(10 ** (arrow.precision - arrow.scale)), wide))
        bad = pc.and_(array.is_valid(), pc.invert(pc.fill_null(fits, False)))
        return pc.if_else(bad, None, array), bad
    if pa.types.is_struct(arrow):
        children, bad = [], none_bad
        for f, child in zip(arrow, array.flatten(), strict=True):
            converted, child_bad = _to_declared(child, f.type, time_format_of(f))
            children.append(converted)
            bad = pc.or_(bad, child_bad)
        return pa.StructArray.from_arrays(children, fields=list(arrow), mask=array.is_null()), bad
    if pa.types.is_list(arrow):
        values, values_bad = _to_declared(array.flatten(), arrow.value_type, time_format)
        offsets = pc.subtract(array.offsets, array.offsets[0])
        converted = pa.ListArray.from_arrays(offsets, values, type=arrow, mask=array.is_null())
        parents = pc.list_parent_indices(array).filter(values_bad)
        bad = pc.is_in(pa.array(range(len(array)), pa.int64()), value_set=parents.cast(pa.int64()))
        return converted, bad
    if pa.types.is_timestamp(arrow) and time_format in EPOCH_UNITS:
        micros = _epoch_micros(array, EPOCH_UNITS[time_format])
    elif pa.types.is_timestamp(arrow):
        has_offset = pc.match_substring_regex(array, r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
        # Arrow reads a time without an offset into a UTC timestamp only when told so by a Z.
        text = pc.binary_join_element_wise(array, pc.if_else(has_offset, "", "Z"), "")
        micros = _cast_each(text, pc.match_substring_regex(array, ISO_TIMESTAMP), pa.timestamp("us", tz="UTC"))
        micros = micros.cast(pa.int64())
    else:  # date
        days = _cast_each(array, pc.match_substring_regex(array, ISO_DATE), pa.date32())
        # Day 1 of year 1 .. the last day of 9999, the dates every reader (and the rules) can hold.
        micros = pc.multiply(days.cast(pa.int32()).cast(pa.int64()), 86_400_000_000)
    in_range = pc.and_(pc.greater_equal(micros, MIN_MICROS), pc.less_equal(micros, MAX_MICROS))
    bad = pc.and_(array.is_valid(), pc.invert(pc.fill_null(in_range, False)))
    kept = pc.if_else(bad, None, micros)
    if pa.types.is_date(arrow):
        return pc.divide(kept, 86_400_000_000).cast(pa.int32()).cast(arrow), bad
    return kept.cast(arrow), bad


def _cast_each(text: pa.Array, matches: pa.Array, arrow: pa.DataType) -> pa.Array:
    """``text`` cast to ``arrow`` where it ``matches``; null where not or where the cast refuses it (no such day)."""
    candidates = pc.if_else(pc.fill_null(matches, False), text, None)
    try:
        return pc.cast(candidates, arrow)
    except pa.ArrowInvalid:  # rare: a value with no such day or hour; find which, one by one
        pieces = []
        for index in range(len(candidates)):
            try:
                pieces.append(pc.cast(candidates.slice(index, 1), arrow))
            except pa.ArrowInvalid:
                pieces.append(pa.nulls(1, arrow))
        return pa.concat_arrays(pieces)


def _epoch_micros(numbers: pa.Array, exponent: int) -> pa.Array:
    """Epoch numbers (decimals of ``exponent`` places) as int64 microseconds; null beyond the timestamps' range."""
    bound = pa.scalar(Decimal(MAX_MICROS // 10**exponent + 1), pa.decimal128(24, 0))
    in_range = pc.less(pc.abs(numbers), bound)
    scaled = pc.multiply(pc.if_else(in_range, numbers, None), pa.scalar(Decimal(10**exponent), pa.decimal128(7, 0)))
    return scaled.cast(pa.int64())


def _read_chunk(data: bytes, chunk: _Chunk, schema: pa.Schema) -> tuple[pa.Table | None, int | None]:
    """The chunk's rows, or (None, the refused row if Arrow named it)."""
    view = memoryview(data)[chunk.start : chunk.end]
    try:
        table = pa_json.read_json(
            pa.BufferReader(pa.py_buffer(view)),  # no copy of the chunk
            # One block for the whole chunk and no threads of its own: chunks are read in parallel instead.
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(view), 1) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        match = re.search(r"\bin row (\d+)\b", str(exc))
        return None, int(match.group(1)) if match else None
    if table.num_rows != chunk.lines:
        return None, None  # a line held more than one JSON document
    return table.select(schema.names), None


def ranges_between(odd: list[int], count: int) -> list[tuple[int, int]]:
    """The (first, stop) ranges of the lines ``0 .. count - 1`` that are not in ``odd`` (sorted)."""
    ranges, first = [], 0
    for line in [*odd, count]:
        if line > first:
            ranges.append((first, line))
        first = line + 1
    return ranges


def _positions(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def _contains(arrow: pa.DataType, kind: Callable[[pa.DataType], bool]) -> bool:
    """Whether ``arrow`` is, or holds at any depth of structs and lists, a type ``kind`` says yes to."""
    if pa.types.is_struct(arrow):
        return any(_contains(f.type, kind) for f in arrow)
    if pa.types.is_list(arrow):
        return _contains(arrow.value_type, kind)
    return bool(kind(arrow))


def _has_doubles(arrow: pa.DataType) -> bool:
    return _contains(arrow, pa.types.is_floating)


def rows_not_finite(table: pa.Table) -> list[int]:
    """Rows holding NaN or an infinite double at any depth.

    Arrow reads ``NaN``, ``Inf`` and ``Infinity`` as numbers, and an integer literal
    too big for a double as infinity; JSON has none of them, so those rows are
    decided by ``classify_line`` (malformed, or a value that does not fit).
    """
    rows: set[int] = set()
    for column in table.columns:
        if _has_doubles(column.type):
            rows |= _not_finite_at(column.combine_chunks())
    return sorted(rows)


def _not_finite_at(array: pa.Array) -> set[int]:
    if pa.types.is_floating(array.type):
        bad = pc.or_(pc.is_inf(array), pc.is_nan(array))
        return set(pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist())
    if pa.types.is_struct(array.type):
        return set().union(*(_not_finite_at(child) for child in array.flatten() if _has_doubles(child.type)))
    if pa.types.is_list(array.type):
        inner = _not_finite_at(array.flatten())
        if not inner:
            return set()
        return set(pc.list_parent_indices(array).take(pa.array(sorted(inner), pa.int64())).to_pylist())
    return set()

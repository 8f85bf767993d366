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
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

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
    return BulkRead(table, lines, sorted(left))


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


def _has_doubles(arrow: pa.DataType) -> bool:
    if pa.types.is_struct(arrow):
        return any(_has_doubles(f.type) for f in arrow)
    if pa.types.is_list(arrow):
        return _has_doubles(arrow.value_type)
    return bool(pa.types.is_floating(arrow))


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
